"""One model's running batch: a row per stream, joined and left between steps.

The rows' state is one (layers, B, H) tensor (a pair for an LSTM) and the logits
for each row's next id one (B, V) tensor. A job joins by reading its prompts (one
forward over each) and adding n rows per prompt; a row leaves by not being selected
for the next step. Each row keeps its own settings, stop strings, length and random
generator.
"""

from __future__ import annotations

import numpy as np
import torch

from charrnn.inference import SingleStep, concat_rows, select_rows
from charrnn.sample.mixed import RowSettings, pick_rows
from charrnn.sample.streams import StreamText, ban, read_ids
from charrnn.serve.jobs import Job, Update
from charrnn.serve.models import ServedModel


class Row:
    """One stream: its job, its completion index, its text so far (StreamText), and the
    text made since the engine last collected it."""

    __slots__ = ("job", "index", "rng", "out", "text", "shown")

    def __init__(self, job: Job, index: int, vocab):
        self.job, self.index = job, index
        # numpy takes no negative seeds; OpenAI's API takes any integer
        seed = None if job.seed is None else [job.seed % 2**64, index]
        self.rng = np.random.default_rng(seed)  # fresh entropy without a seed
        self.out = StreamText(vocab, job.max_chars, job.stops)
        self.text = ""  # not yet collected
        self.shown = False  # some text was collected before

    def take(self, token_id: int) -> str | None:
        """Add one id to the text; how the stream ended, or None while it goes on."""
        self.text += self.out.push(token_id)
        return self.out.finish

    @property
    def urgent(self) -> bool:
        """Its first text is waiting: a client's time to the first character."""
        return bool(self.text) and not self.shown

    def collect(self, finish: str | None = None) -> Update:
        update = Update(self.job, self.index, self.text, finish)
        self.text, self.shown = "", True
        return update


class ModelBatch:
    def __init__(self, served: ServedModel):
        self.model, self.vocab = served.model, served.vocab
        self.device = next(self.model.parameters()).device
        self.single_step = SingleStep(self.model)
        self.banned = torch.tensor(self.vocab.special_ids, dtype=torch.long, device=self.device)
        self.rows: list[Row] = []
        self.state = None  # (layers, B, H), or a pair
        self.logits: torch.Tensor | None = None  # (B, V): each row's next id
        self.settings: RowSettings | None = None
        self.ended: list[Update] = []  # the last updates of rows that left, not yet collected

    def join(self, job: Job) -> None:
        """Read the job's prompts and add its rows to the batch. All or nothing: a prompt
        that fails (out of memory, say) leaves the batch as it was."""
        states, logits, rows = [], [], []
        for p, prompt in enumerate(job.prompts):
            ids = self.vocab.encode_prepared(prompt).astype(np.int64)  # checked and prepared
            ids = torch.from_numpy(ids).to(self.device)
            last, state = read_ids(self.model, ids[None], None)  # (1, V)
            every = torch.zeros(job.n, dtype=torch.long, device=self.device)
            states.append(select_rows(state, every))
            logits.append(last.index_select(0, every))
            rows += [Row(job, p * job.n + j, self.vocab) for j in range(job.n)]
        if self.rows:
            states.insert(0, self.state)
            logits.insert(0, self.logits)
        self.state, self.logits = concat_rows(states), torch.cat(logits)
        self.rows += rows
        self._settings_changed()

    def step(self) -> bool:
        """One id for every row; the rows that ended or were cancelled leave. True when
        some client is waiting for its first text or its end (see `collect`)."""
        self._drop([i for i, r in enumerate(self.rows) if not r.job.cancelled])
        if not self.rows:
            return False
        draws = zip(self.rows, self.settings.greedy, strict=True)
        uniform = [0.0 if greedy else row.rng.random() for row, greedy in draws]  # (B,)
        uniform = torch.tensor(uniform, dtype=torch.float32).to(self.device, non_blocking=True)
        ids = pick_rows(ban(self.logits, self.banned), self.settings, uniform)  # (B,)
        going_on, urgent = [], False
        for i, (row, token_id) in enumerate(zip(self.rows, ids.tolist(), strict=True)):
            if (finish := row.take(token_id)) is None:
                going_on.append(i)
                urgent = urgent or row.urgent
            else:
                self.ended.append(row.collect(finish))
                urgent = True
        if len(going_on) < len(self.rows):
            ids = ids[going_on] if going_on else ids[:0]
            self._drop(going_on)
        if self.rows:
            self.logits, self.state = self.single_step(ids, self.state)  # (B, V)
        return urgent

    def collect(self) -> list[Update]:
        """The text made since the last call, one update per row that has some, and the
        ends of the rows that left."""
        updates, self.ended = self.ended, []
        updates += [row.collect() for row in self.rows if row.text]
        return updates

    def fail(self, message: str, finish: str = "error") -> list[Update]:
        """End every row: "error" (a failed step) or "shutdown" (the server stopping)."""
        updates = [Update(r.job, r.index, "", finish, message) for r in self.rows]
        self._drop([])
        return updates

    def _drop(self, keep: list[int]) -> None:
        """Keep only the rows at `keep`."""
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self.state = self.logits = self.settings = None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.state = select_rows(self.state, index)
        self.logits = self.logits.index_select(0, index)
        self._settings_changed()

    def _settings_changed(self) -> None:
        configs = [r.job.config for r in self.rows]
        self.settings = RowSettings.of(configs, self.logits.size(-1), self.device)

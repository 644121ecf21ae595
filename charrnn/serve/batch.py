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
from charrnn.sample.streams import StopMatcher, ban, read_ids
from charrnn.serve.jobs import Job, Update
from charrnn.serve.models import ServedModel


class Row:
    """One stream: its job, its completion index and how far it has got."""

    __slots__ = ("job", "index", "rng", "decoder", "matcher", "made", "started")

    def __init__(self, job: Job, index: int, vocab):
        self.job, self.index = job, index
        seed = None if job.seed is None else [job.seed, index]
        self.rng = np.random.default_rng(seed)  # fresh entropy without a seed
        self.decoder = vocab.decoder()
        self.matcher = StopMatcher(job.stops)
        self.made = 0
        self.started = False

    def take(self, token_id: int) -> Update | None:
        """Add one id; the text now safe to show and whether the stream ended."""
        limit = self.job.max_chars
        piece = self.decoder.push(token_id)[: limit - self.made]
        self.made += len(piece)
        text, finish = self.matcher.push(piece), None
        if self.matcher.done:
            finish = "stop"
        elif self.made >= limit:
            text += self.matcher.push(self.decoder.flush()[: limit - self.made])
            text += self.matcher.flush()
            finish = "stop" if self.matcher.done else "length"
        if not text and finish is None:
            return None
        first, self.started = not self.started, True
        return Update(self.job, self.index, text, finish, first=first)


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

    def join(self, job: Job) -> None:
        """Read the job's prompts and add its rows to the batch."""
        states, logits = [self.state] if self.rows else [], [self.logits] if self.rows else []
        for p, prompt in enumerate(job.prompts):
            ids = torch.from_numpy(self.vocab.encode(prompt).astype(np.int64)).to(self.device)
            last, state = read_ids(self.model, ids[None], None)  # (1, V)
            every = torch.zeros(job.n, dtype=torch.long, device=self.device)
            states.append(select_rows(state, every))
            logits.append(last.index_select(0, every))
            self.rows += [Row(job, p * job.n + j, self.vocab) for j in range(job.n)]
        self.state, self.logits = concat_rows(states), torch.cat(logits)
        self._settings_changed()

    def step(self) -> list[Update]:
        """One id for every row; the rows that ended or were cancelled leave."""
        self._drop([i for i, r in enumerate(self.rows) if not r.job.cancelled])
        if not self.rows:
            return []
        draws = zip(self.rows, self.settings.greedy, strict=True)
        uniform = [0.0 if greedy else row.rng.random() for row, greedy in draws]  # (B,)
        uniform = torch.tensor(uniform, dtype=torch.float32).to(self.device, non_blocking=True)
        ids = pick_rows(ban(self.logits, self.banned), self.settings, uniform)  # (B,)
        updates, going_on = [], []
        for i, (row, token_id) in enumerate(zip(self.rows, ids.tolist(), strict=True)):
            update = row.take(token_id)
            if update is not None:
                updates.append(update)
            if update is None or update.finish is None:
                going_on.append(i)
        if len(going_on) < len(self.rows):
            ids = ids[going_on] if going_on else ids[:0]
            self._drop(going_on)
        if self.rows:
            self.logits, self.state = self.single_step(ids, self.state)  # (B, V)
        return updates

    def fail(self, message: str) -> list[Update]:
        """End every row with an error (a failed step, or the server stopping)."""
        updates = [Update(r.job, r.index, "", "error", message) for r in self.rows]
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

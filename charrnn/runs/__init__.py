"""Run folders: what they record (records.py), the lock (lock.py), the callback that
writes them during training (writer.py), listing them (listing.py), and what a resume
means (resume.py)."""

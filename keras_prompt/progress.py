"""Keras progress bars for long work outside ``fit``.

Scoring a 40,000-row dev set, ensembles, SavedModel exports and checkpoint
imports can take minutes; a bar shows they are moving. The bar is Keras' own
(``keras.utils.Progbar``), written to stderr so that commands whose stdout is
JSON stay parseable. ``verbose`` follows ``fit``: 0 silent, 1 a live bar, 2
one line when done, ``"auto"`` a live bar on a terminal and one line
otherwise (logs, CI).

Example:

```python
from keras_prompt.progress import ProgressBar
with ProgressBar(1000, verbose=1, unit_name="example", label="scoring") as bar:
    for start in range(0, 1000, 100):
        bar.add(100)
```
"""

from __future__ import annotations

import contextlib
import sys

import keras

__all__ = ["ProgressBar", "resolve_verbose"]


def resolve_verbose(verbose: int | str | None) -> int:
    """``fit``-style verbosity as 0, 1 or 2 (``"auto"``: 1 on a terminal)."""
    if verbose in (None, "auto"):
        return 1 if sys.stderr.isatty() else 2
    verbose = int(verbose)
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 0, 1, 2 or 'auto'; got {verbose!r}.")
    return verbose


class ProgressBar:
    """A ``keras.utils.Progbar`` on stderr that does nothing at ``verbose=0``.

    Args:
        total: Units of work (``None`` when unknown).
        verbose: 0, 1, 2 or ``"auto"`` (see the module docstring).
        unit_name: What a unit is, shown in the rate ("example", "tensor").
        label: A line printed before the bar (when not silent).
    """

    def __init__(
        self,
        total: int | None,
        verbose: int | str | None = 0,
        unit_name: str = "step",
        label: str | None = None,
    ):
        self.verbose = resolve_verbose(verbose)
        self.total = total
        self.done = 0
        self._bar = None
        if self.verbose:
            if label:
                print(label, file=sys.stderr, flush=True)
            self._bar = keras.utils.Progbar(
                total, verbose=self.verbose, unit_name=unit_name
            )

    def add(self, n: int = 1) -> None:
        """Advance by ``n`` units."""
        self.done += n
        if self._bar is not None:
            with contextlib.redirect_stdout(sys.stderr):
                self._bar.add(n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None and exc_info[0] is None:
            if self.total is not None and self.done < self.total:
                # Work ended early (fewer units than announced): close the
                # bar so its last line is complete.
                with contextlib.redirect_stdout(sys.stderr):
                    self._bar.update(self.total, finalize=True)
            sys.stderr.flush()

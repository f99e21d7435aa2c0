"""PromptBank: the task -> prompt(s) table baked into a serving export.

One frozen T5 serves many tasks because a task is only its prompt (Lester et
al., 2021, section 1). An export therefore carries a small bank of prompts
(`[N, prompt_length, hidden_dim]` floats, kilobytes per task next to the
backbone's megabytes) and a table from task name to the prompt(s) trained for
it, plus each task's verbalizers so that rank classification and prompt
ensembling can run server-side without the client knowing the label strings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np

from keras_prompt import prompts as prompt_files

PromptSource = Union[str, os.PathLike, np.ndarray]


def _as_list(value) -> list:
    """One task's prompts as a list: a path or `[P, H]` array is one prompt,
    a `[K, P, H]` array or a list is K prompts."""
    if isinstance(value, np.ndarray) and value.ndim == 3:
        return list(value)
    if isinstance(value, (str, os.PathLike, np.ndarray)):
        return [value]
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("A task needs at least one prompt; got an empty list.")
        if all(isinstance(v, (int, float, np.number)) for v in value):
            raise ValueError(
                "A prompt must be a (prompt_length, hidden_dim) array, a prompt "
                "file path, or a list of those; got a flat list of numbers."
            )
        return list(value)
    return [np.asarray(value)]


def _labels(task: str, words) -> tuple[str, ...]:
    """A task's verbalizers as a tuple; a lone string is refused, not split."""
    if isinstance(words, (str, bytes)) or not isinstance(words, (list, tuple)):
        raise ValueError(
            f"Verbalizers of task {task!r} must be a list of strings; got {words!r}."
        )
    return tuple(words)


def _registry_verbalizers(task: str) -> tuple[str, ...]:
    """The verbalizers of a task known to `keras_prompt.data`, else ()."""
    from keras_prompt.data.tasks import TASKS

    known = TASKS.get(task)
    return tuple(known.verbalizers) if known is not None else ()


@dataclass
class PromptBank:
    """Prompts per task, with the verbalizers used to rank-classify them.

    A task with several prompts (for instance prompts trained from different
    initialisations) is served as a prompt ensemble by the `ensemble`
    signature (paper section 6: majority vote over the prompts); the other
    signatures use the task's first prompt.

    Attributes:
        prompts: task name -> list of float32 `(prompt_length, hidden_dim)`
            arrays; order is preserved (the first is the task's main prompt).
        verbalizers: task name -> the label strings, in label-index order;
            `()` for a task that is only served by generation.
        sources: task name -> where each prompt came from (file path or
            `"<array>"`), recorded in the export's metadata.
        backbones: task name -> the `backbone` field of each prompt file's
            metadata (`None` for arrays and files without one), checked
            against the exported model by `check_backbone`.

    Example:

    ```python
    bank = PromptBank.from_files(
        {"sst2": "prompts/sst2.npy", "rte": ["rte_seed0.npy", "rte_seed1.npy"]}
    )
    export_saved_model(model, "/models/t5_prompts", prompt_bank=bank)
    ```
    """

    prompts: dict[str, list[np.ndarray]]
    verbalizers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    backbones: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("A PromptBank needs at least one task.")
        shapes = set()
        checked: dict[str, list[np.ndarray]] = {}
        for task, arrays in self.prompts.items():
            if not isinstance(task, str) or not task or task != task.strip():
                raise ValueError(
                    f"Task names must be non-empty strings without surrounding "
                    f"whitespace; got {task!r}."
                )
            arrays = _as_list(arrays)
            checked[task] = [prompt_files.check_prompt_array(a) for a in arrays]
            shapes.update(a.shape for a in checked[task])
        if len(shapes) != 1:
            raise ValueError(
                "All prompts in a bank must share one (prompt_length, hidden_dim) "
                f"shape, since one model serves them all; got {sorted(shapes)}."
            )
        self.prompts = checked
        unknown = set(self.verbalizers) - set(self.prompts)
        if unknown:
            raise ValueError(
                f"Verbalizers were given for tasks without prompts: {sorted(unknown)}."
            )
        self.verbalizers = {
            task: _labels(task, self.verbalizers.get(task, ())) for task in self.prompts
        }
        for task, words in self.verbalizers.items():
            if any(not isinstance(w, str) or not w for w in words):
                raise ValueError(
                    f"Verbalizers of task {task!r} must be non-empty strings; "
                    f"got {list(words)!r}."
                )
            if len(set(words)) != len(words):
                raise ValueError(
                    f"Verbalizers of task {task!r} must be distinct; got "
                    f"{list(words)!r}."
                )
        self.sources = {
            task: list(self.sources.get(task, ["<array>"] * len(arrays)))
            for task, arrays in self.prompts.items()
        }
        self.backbones = {
            task: list(self.backbones.get(task, [None] * len(arrays)))
            for task, arrays in self.prompts.items()
        }

    # ------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, Any],
        verbalizers: Mapping[str, Sequence[str]] | None = None,
    ) -> PromptBank:
        """A bank from in-memory arrays: task -> array or list of arrays.

        Verbalizers not given here are taken from `keras_prompt.data`'s task
        registry when the task name is known there (`sst2`, `rte`, ...).
        """
        verbalizers = dict(verbalizers or {})
        resolved = {
            task: _labels(task, verbalizers.get(task, _registry_verbalizers(task)))
            for task in arrays
        }
        return cls(
            prompts={task: _as_list(value) for task, value in arrays.items()},
            verbalizers=resolved,
        )

    @classmethod
    def from_files(
        cls,
        files: Mapping[str, PromptSource | Sequence[PromptSource]],
        verbalizers: Mapping[str, Sequence[str]] | None = None,
    ) -> PromptBank:
        """A bank from prompt files (`keras_prompt.prompts` format).

        Each task maps to one path or a list of paths (arrays are accepted
        too). A task's verbalizers come, in order of precedence, from
        `verbalizers`, from the prompt files' metadata (`save_prompt(...,
        verbalizers=...)` writes them; all of a task's files must agree), or
        from `keras_prompt.data`'s task registry.
        """
        verbalizers = dict(verbalizers or {})
        prompts: dict[str, list[np.ndarray]] = {}
        sources: dict[str, list[str]] = {}
        backbones: dict[str, list[dict[str, Any] | None]] = {}
        resolved: dict[str, tuple[str, ...]] = {}
        for task, value in files.items():
            prompts[task], sources[task], backbones[task] = [], [], []
            from_metadata: set[tuple[str, ...]] = set()
            for item in _as_list(value):
                metadata = {}
                if isinstance(item, (str, os.PathLike)):
                    array, metadata = prompt_files.load_prompt_file(item)
                    sources[task].append(os.fspath(item))
                    if metadata.get("verbalizers"):
                        from_metadata.add(tuple(metadata["verbalizers"]))
                else:
                    array = prompt_files.check_prompt_array(item)
                    sources[task].append("<array>")
                prompts[task].append(array)
                backbones[task].append(metadata.get("backbone"))
            if task in verbalizers:
                resolved[task] = _labels(task, verbalizers[task])
            elif len(from_metadata) > 1:
                raise ValueError(
                    f"The prompt files of task {task!r} disagree on its "
                    f"verbalizers: {sorted(from_metadata)}; pass `verbalizers=`."
                )
            elif from_metadata:
                resolved[task] = from_metadata.pop()
            else:
                resolved[task] = _registry_verbalizers(task)
        return cls(
            prompts=prompts,
            verbalizers=resolved,
            sources=sources,
            backbones=backbones,
        )

    # ------------------------------------------------------------------
    # Views used by the exporter
    # ------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        """Task names in bank order."""
        return list(self.prompts)

    @property
    def prompt_shape(self) -> tuple[int, int]:
        """The shared `(prompt_length, hidden_dim)`."""
        return next(iter(self.prompts.values()))[0].shape

    @property
    def num_prompts(self) -> int:
        """Total number of prompts N (rows of the stacked bank)."""
        return sum(len(v) for v in self.prompts.values())

    def stacked(self) -> tuple[np.ndarray, dict[str, list[int]]]:
        """`([N, P, H] float32 array, task -> its row indices)`."""
        rows: list[np.ndarray] = []
        indices: dict[str, list[int]] = {}
        for task, arrays in self.prompts.items():
            indices[task] = list(range(len(rows), len(rows) + len(arrays)))
            rows.extend(arrays)
        return np.stack(rows).astype("float32"), indices

    def check_shape(self, prompt_shape: tuple[int, int]) -> None:
        """Raises unless every prompt fits a model of this `prompt_shape`."""
        for arrays in self.prompts.values():
            for array in arrays:
                prompt_files.check_prompt_array(array, tuple(prompt_shape))

    def check_backbone(self, fingerprint: str, hidden_dim: int) -> None:
        """Raises unless every prompt file's metadata names this backbone."""
        for task, entries in self.backbones.items():
            for source, backbone in zip(self.sources[task], entries):
                if backbone is not None:
                    prompt_files.check_prompt_backbone(
                        {"backbone": backbone},
                        source,
                        fingerprint=fingerprint,
                        hidden_dim=hidden_dim,
                    )

    def metadata(self) -> dict[str, Any]:
        """JSON-able description (no arrays), stored in the export."""
        _, indices = self.stacked()
        return {
            task: {
                "num_prompts": len(self.prompts[task]),
                "prompt_indices": indices[task],
                "verbalizers": list(self.verbalizers[task]),
                "sources": self.sources[task],
            }
            for task in self.prompts
        }

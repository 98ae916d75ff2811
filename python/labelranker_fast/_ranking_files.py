"""A LabelRanking's files: its JSON form, a timm class map, Hugging Face label maps.

``RankingFiles`` is the base class that gives LabelRanking these forms; it uses only the
ranking's public fields, and builds rankings from files through the constructor, which
validates them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar, Union

import numpy as np

from ._io import read_json, write_json, write_text
from ._ranking_text import _class_name, class_map_lines, ranking_dict, ranking_fields

PathArg = Union[str, "os.PathLike[str]", bytes]  # a file path, as the readers take it
_R = TypeVar("_R", bound="RankingFiles")


class RankingFiles:
    """The file forms of a ranking (see LabelRanking)."""

    if TYPE_CHECKING:
        classes: np.ndarray
        order: np.ndarray
        centroids: np.ndarray
        eigenvalues: np.ndarray
        shrinkage: float
        names: tuple[str, ...] | None
        stability: Any

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

        @property
        def ranked_classes(self) -> np.ndarray: ...

        @property
        def ranked_names(self) -> tuple[str, ...] | None: ...

    def to_dict(self) -> dict[str, Any]:
        """The ranking as plain JSON types (format version 3: the classes' dtype and names).

        Returns
        -------
        dict
            The fields ``from_dict`` reads, "format" and "version" among them.
        """
        fields = ("classes", "order", "centroids", "eigenvalues", "shrinkage", "names", "stability")
        return ranking_dict(**{k: getattr(self, k) for k in fields})

    @classmethod
    def from_dict(cls: type[_R], data: dict[str, Any]) -> _R:
        """The ranking ``data`` holds (as ``to_dict`` makes it), validated; ValueError if
        not one. Version 1 did not record the classes' dtype: its classes are read by the
        label rule (ints, floats or strings; integers above 2**63 as uint64). Version 3
        adds the optional "names".

        Parameters
        ----------
        data : dict
            As ``to_dict`` (or ``json.load`` of a ``to_json`` file) makes it.

        Returns
        -------
        LabelRanking

        Raises
        ------
        ValueError
            ``data`` is not a ranking: wrong format or version, missing or malformed fields.
        """
        fields = ranking_fields(data)
        try:
            return cls(**fields)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"malformed ranking: {exc}") from exc

    def to_json(self, path: PathArg) -> None:
        """Writes the ranking as JSON, atomically (see ``labelranker_fast._io``).

        Parameters
        ----------
        path : str, os.PathLike or bytes
            The file to write.

        Raises
        ------
        TypeError, FileNotFoundError, ValueError
            As ``ScatterAccumulator.save``: not a path, no such folder, not writable.
        """
        write_json(path, self.to_dict())

    def to_class_map(self, path: PathArg, names: Iterable[str] | None = None) -> None:
        """Writes a timm class-map file: line p holds the name of the class at position p.

        timm's ``train.py --class-map PATH`` (or ``timm.data.create_dataset(..., class_map=PATH)``)
        then gives every image folder its ranked position as target (written atomically, UTF-8).

        Parameters
        ----------
        path : str, os.PathLike or bytes
            The file to write.
        names : sequence of str, optional
            Folder name of each class index (``ImageFolder.classes``) of a ranking of
            indices 0..C-1 (``extract_and_rank``'s). Default: the ranking's ``names``;
            without them, classes that are text are written as they are, and integer
            classes (which timm would match against folder names wrongly) are refused.

        Raises
        ------
        ValueError
            Integer classes without names; names that are duplicated, empty, padded
            with spaces, span lines or are not UTF-8; ``names`` for a ranking not of
            indices 0..C-1, of the wrong length or other than the ranking's own names.
            Nothing is written then.
        TypeError
            ``names`` is one string, or holds something other than strings.
        """
        lines = class_map_lines(self.classes, self.order, self.names, names)
        write_text(path, "\n".join(lines) + "\n")

    def to_hf_label_maps(self) -> tuple[dict[int, str], dict[str, int]]:
        """``(id2label, label2id)`` for a Hugging Face ``PretrainedConfig``: position p is
        labelled with the name of the class there (``names``, else the class as text).

        Returns
        -------
        id2label : dict of {int: str}
            Head position -> class name.
        label2id : dict of {str: int}
            Its inverse.

        Raises
        ------
        ValueError
            Two classes whose text is the same, or bytes classes that are not UTF-8.
        """
        labels = self.ranked_names or [_class_name(c) for c in self.ranked_classes]
        if len(set(labels)) != len(labels):
            raise ValueError("the classes' names are not unique; give them with with_names()")
        id2label = dict(enumerate(labels))
        return id2label, {name: p for p, name in id2label.items()}

    @classmethod
    def from_json(cls: type[_R], path: PathArg) -> _R:
        """Reads and validates a ranking written by ``to_json`` (format 1, 2 or 3).

        Parameters
        ----------
        path : str, os.PathLike or bytes
            The file to read.

        Returns
        -------
        LabelRanking

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ValueError
            Not a valid ranking file (not JSON, nested too deeply, wrong format or
            version, inconsistent fields, a directory).
        """
        return cls.from_dict(read_json(path, "ranking"))

"""labelranker_fast.lightning: the ranking as a PyTorch Lightning callback.

    from labelranker_fast.lightning import LabelRankerCallback

``LabelRankerCallback`` ranks the classes on the module's backbone in ``on_fit_start``: the
first hook that runs after a checkpoint given to ``fit(ckpt_path=...)`` has been read
(``setup`` runs before it) and before the train and val dataloaders are built. It puts
``ranking.as_module()`` on the module as ``label_ranking`` and keeps the ranking in its
``state_dict``, so every checkpoint carries the label order its head was trained with.

Importing it needs Lightning 2.5 or later (``pip install "labelranker_fast[lightning]"``,
the ``lightning`` package); the rest of the package does not.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Union

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised by the test that hides lightning
    raise ImportError(
        "labelranker_fast.lightning needs Lightning: pip install 'labelranker_fast[lightning]'"
    ) from exc

# Before 2.5, validate/test/predict(ckpt_path=...) did not restore callback state, so the
# ranking of an evaluated checkpoint would be refused as missing.
if tuple(int(p) for p in pl.__version__.split(".")[:2]) < (2, 5):  # pragma: no cover
    raise ImportError(f"labelranker_fast.lightning needs lightning>=2.5, found {pl.__version__}")

import numpy as np
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.data.distributed import DistributedSampler

from ._inputs import check_int
from ._ranking import LabelRanking
from ._ranking_torch import LabelRankingModule
from .torch import extract_and_rank
from .torch._device import check_amp

__all__ = ["LabelRankerCallback"]

Loader = Union[Iterable[Any], Callable[[], Iterable[Any]]]

# Arguments of extract_and_rank the callback sets itself: a rank-local "distributed=False"
# would give each rank its own ranking.
_OWN = ("model", "loader", "num_classes", "return_accumulator", "distributed")


class LabelRankerCallback(pl.Callback):
    """Ranks the classes on ``pl_module.<backbone>`` before training, and keeps the ranking.

    In ``on_fit_start`` (after ``setup`` and after a ``fit(ckpt_path=...)`` checkpoint is
    read, before the dataloaders are built) the callback calls ``extract_and_rank`` on
    ``getattr(pl_module, backbone)`` over ``loader``, on the module's device, and sets
    ``pl_module.label_ranking = ranking.as_module()``, so that a ``training_step`` can take
    ``self.label_ranking.remap(y)`` on the device. It ranks once: the ranking is never
    recomputed while the callback holds one, and one that comes from a checkpoint is used
    as it is.

    The ranking is saved in the callback's ``state_dict``, so in every checkpoint. Resuming
    (``fit(ckpt_path=...)``) and ``validate``/``test``/``predict(ckpt_path=...)`` restore it
    and put it on the module. A checkpoint that holds no ranking of this callback (written
    without it) is refused with ValueError, unless ``ranking=`` says which one to use: the
    label order its head was trained with is unknown, and ranking anew could give another.

    Under several processes (DDP) sample i of ``loader.dataset`` goes to rank
    i mod world size (no padding, every sample once) and the statistics of every rank are
    combined (``all_reduce_``): every rank gets the same ranking, that of the whole data
    set. A loader whose sampler is a ``DistributedSampler`` is used as it is (its padding
    counts a few samples twice when the size does not divide).

    Parameters
    ----------
    loader : DataLoader, iterable of batches, or callable returning one
        The labelled training data, as for ``extract_and_rank`` (an eval transform is
        best: the ranking is of the frozen model's features). A callable with no
        arguments is called when the ranking is made, e.g. a data module's bound
        ``train_dataloader`` (set up by then). Under several processes it must give a
        ``DataLoader`` over a map-style data set with a ``batch_size``. May be None when
        ``ranking`` is given.
    num_classes : int
        Number of classes; targets are class indices in [0, num_classes).
    backbone : str
        The attribute of the LightningModule that holds the frozen-feature model.
    ranking : LabelRanking, optional
        Use this ranking instead of computing one (e.g. ``LabelRanking.from_json`` of a
        saved one): for a checkpoint written without this callback. A checkpoint that
        holds another ranking is refused.
    **extract_kwargs
        Passed to ``extract_and_rank``: ``pooling``, ``shrinkage``, ``n_components``,
        ``amp``, ``n_threads``, ``class_names``, ``device`` (default: the module's),
        ``progress`` (default: on rank 0 when the trainer shows a progress bar).

    Attributes
    ----------
    ranking : LabelRanking or None
        The ranking, once made, given or restored.

    Raises
    ------
    TypeError
        ``backbone`` not a non-empty string, ``ranking`` not a LabelRanking, an argument
        ``extract_and_rank`` does not take, or one the callback sets itself
        (``distributed``, ``return_accumulator``).
    ValueError
        ``num_classes`` below 2, neither ``loader`` nor ``ranking``, or a ``ranking`` of
        other classes than 0..num_classes-1.
    """

    def __init__(
        self,
        loader: Loader | None,
        num_classes: int,
        *,
        backbone: str = "backbone",
        ranking: LabelRanking | None = None,
        **extract_kwargs: Any,
    ) -> None:
        self.num_classes = check_int(num_classes, "num_classes", 2)
        if not isinstance(backbone, str) or not backbone:
            raise TypeError(f"backbone must be an attribute name (str), got {backbone!r}")
        accepted = set(inspect.signature(extract_and_rank).parameters) - set(_OWN)
        for key in extract_kwargs:
            if key in _OWN:
                raise TypeError(f"LabelRankerCallback sets {key!r} itself; do not pass it")
            if key not in accepted:
                raise TypeError(f"extract_and_rank takes no argument {key!r}")
        if "amp" in extract_kwargs:  # refused now, not when the ranking runs
            check_amp(extract_kwargs["amp"])
        if ranking is not None and not isinstance(ranking, LabelRanking):
            raise TypeError(f"ranking must be a LabelRanking, got {type(ranking).__name__}")
        if loader is None and ranking is None:
            raise ValueError("give a loader to rank on, or ranking=")
        self.loader = loader
        self.backbone = backbone
        self.extract_kwargs = extract_kwargs
        self._given = ranking is not None
        self.ranking = None if ranking is None else self._checked(ranking, "ranking")
        self._module: pl.LightningModule | None = None
        self._restored = False
        self._attached: LabelRankingModule | None = None

    @property
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint (one per backbone attribute).

        Returns
        -------
        str
        """
        return self._generate_state_key(backbone=self.backbone)

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remembers the module (a checkpoint's ranking is put on it when read).

        Parameters
        ----------
        trainer : lightning.pytorch.Trainer
        pl_module : lightning.pytorch.LightningModule
        stage : str

        Raises
        ------
        ValueError
            Another LabelRankerCallback in the trainer: both would set
            ``pl_module.label_ranking``, and the module would train with whichever ran last.
        """
        callbacks = getattr(trainer, "callbacks", [])  # set at run time: untyped in Lightning
        others = [c for c in callbacks if isinstance(c, LabelRankerCallback)]
        if len(others) > 1:
            raise ValueError(
                f"the trainer has {len(others)} LabelRankerCallbacks (backbones "
                f"{[c.backbone for c in others]}); each sets pl_module.label_ranking, so "
                "only one may be used"
            )
        self._module = pl_module
        self._restored = False  # per run: set when this run's checkpoint holds a ranking

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Ranks (unless the callback already holds a ranking or a checkpoint is being
        resumed) and puts the ranking on the module.

        Parameters
        ----------
        trainer : lightning.pytorch.Trainer
        pl_module : lightning.pytorch.LightningModule

        Raises
        ------
        ValueError
            The checkpoint resumed from holds no ranking of this callback (and no
            ``ranking=`` was given), no ``backbone`` attribute, or what ``extract_and_rank``
            raises.
        TypeError
            Under several processes, a loader that cannot be split among the ranks; or
            what ``extract_and_rank`` raises.
        """
        if trainer.ckpt_path is not None and trainer.strategy.restore_checkpoint_after_setup:
            return  # this strategy reads the checkpoint after this hook: on_train_start checks
        if self.ranking is None and trainer.ckpt_path is None:
            self.ranking = self._rank(trainer, pl_module)
        self._attach(trainer, pl_module)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Checks that the module has the ranking.

        Parameters
        ----------
        trainer : lightning.pytorch.Trainer
        pl_module : lightning.pytorch.LightningModule

        Raises
        ------
        ValueError
            As ``on_validation_start``.
        """
        self._attach(trainer, pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Puts the ranking on the module (restored from ``ckpt_path``, made by an earlier
        ``fit`` of this callback, or given).

        Parameters
        ----------
        trainer : lightning.pytorch.Trainer
        pl_module : lightning.pytorch.LightningModule

        Raises
        ------
        ValueError
            The checkpoint holds no ranking of this callback and no ``ranking=`` was
            given; or the callback has no ranking at all (no checkpoint, no earlier fit).
        TypeError
            ``pl_module.label_ranking`` exists and is not a LabelRankingModule.
        """
        self._attach(trainer, pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """As ``on_validation_start``.

        Parameters
        ----------
        trainer : lightning.pytorch.Trainer
        pl_module : lightning.pytorch.LightningModule

        Raises
        ------
        ValueError, TypeError
            As ``on_validation_start``.
        """
        self._attach(trainer, pl_module)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """As ``on_validation_start``.

        Parameters
        ----------
        trainer : lightning.pytorch.Trainer
        pl_module : lightning.pytorch.LightningModule

        Raises
        ------
        ValueError, TypeError
            As ``on_validation_start``.
        """
        self._attach(trainer, pl_module)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The ranking in JSON types (``LabelRanking.to_dict``), empty before there is one.

        Returns
        -------
        dict
        """
        return {} if self.ranking is None else {"ranking": self.ranking.to_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the ranking of a checkpoint, and puts it on the module when known.

        Parameters
        ----------
        state_dict : dict
            As ``state_dict`` returns it.

        Raises
        ------
        ValueError
            Not a ranking; a ranking of other classes than 0..num_classes-1, or with other
            names than ``class_names`` (default: ``loader.dataset.classes``, when a list of
            str); or another ranking than the one the callback holds (given as
            ``ranking=`` or made by an earlier fit).
        """
        data = state_dict.get("ranking") if isinstance(state_dict, dict) else None
        if not isinstance(data, dict):
            raise ValueError(
                f"the checkpoint's state of {self.state_key} holds no ranking: {state_dict!r:.200}"
            )
        try:
            ranking = LabelRanking.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the checkpoint's ranking is not valid: {exc}") from exc
        ranking = self._checked(ranking, "the checkpoint's ranking")
        if self.ranking is not None and ranking != self.ranking:
            source = "given as ranking=" if self._given else "made by an earlier run"
            raise ValueError(
                f"the checkpoint's ranking {ranking!r} differs from the one this callback "
                f"holds ({source}): {self.ranking!r}"
            )
        self.ranking = ranking
        self._restored = True
        if self._module is not None:
            self._put_on(self._module)

    # ---------------------------------------------------------------- helpers
    def _checked(self, ranking: LabelRanking, what: str) -> LabelRanking:
        """``ranking`` if it ranks the classes 0..num_classes-1 (with the names of
        ``class_names``, when both have names); ValueError otherwise."""
        if ranking.n_classes != self.num_classes:
            raise ValueError(
                f"{what} has {ranking.n_classes} classes but num_classes is {self.num_classes}"
            )
        if not np.array_equal(ranking.classes, np.arange(self.num_classes)):
            raise ValueError(f"{what} must rank the class indices 0..{self.num_classes - 1}")
        names, source = self.extract_kwargs.get("class_names"), "class_names"
        if names is None:  # as extract_and_rank takes them (a callable is not called here)
            names = getattr(getattr(self.loader, "dataset", None), "classes", None)
            source = "loader.dataset.classes"
            if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) for c in names):
                names = None
        if names is not None and ranking.names is not None and tuple(names) != ranking.names:
            raise ValueError(
                f"{what} names its classes {list(ranking.names)[:8]}, but {source} is "
                f"{list(names)[:8]}: class indices would mean other classes"
            )
        return ranking

    def _rank(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> LabelRanking:
        model = getattr(pl_module, self.backbone, None)
        if model is None:
            raise ValueError(
                f"{type(pl_module).__name__} has no attribute {self.backbone!r} to rank on; "
                "pass backbone= the name of the feature model's attribute"
            )
        loader = self.loader() if callable(self.loader) else self.loader
        if loader is None:
            raise ValueError("LabelRankerCallback has no loader to rank on (loader=None)")
        kwargs = {
            "device": pl_module.device,
            "progress": trainer.is_global_zero and trainer.progress_bar_callback is not None,
            **self.extract_kwargs,
        }
        several = trainer.world_size > 1
        if several:
            loader = _shard(loader, trainer.global_rank, trainer.world_size)
        ranking = extract_and_rank(
            model, loader, num_classes=self.num_classes, distributed=several, **kwargs
        )
        return self._checked(ranking, "the ranking")

    def _attach(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Puts the ranking on the module; ValueError when none can be trusted."""
        if trainer.ckpt_path is not None and not self._restored and not self._given:
            raise ValueError(
                f"the checkpoint {trainer.ckpt_path} holds no ranking of {self.state_key} "
                "(written without this callback, or with weights_only): the label order its "
                "head was trained with is unknown. Pass ranking= the ranking it was trained "
                "with (e.g. LabelRanking.from_json)"
            )
        if self.ranking is None:
            raise ValueError(
                "LabelRankerCallback has no ranking: run fit with it first, give ckpt_path= "
                "a checkpoint written with it, or pass ranking="
            )
        self._put_on(pl_module)

    def _put_on(self, pl_module: pl.LightningModule) -> None:
        existing = getattr(pl_module, "label_ranking", None)
        if existing is not None and not isinstance(existing, LabelRankingModule):
            raise TypeError(
                f"{type(pl_module).__name__}.label_ranking already exists "
                f"({type(existing).__name__}); LabelRankerCallback sets it"
            )
        if existing is None or existing is not self._attached:
            assert self.ranking is not None
            # A child module: its buffers move with the LightningModule from now on.
            self._attached = self.ranking.as_module().to(pl_module.device)
            pl_module.label_ranking = self._attached


def _shard(loader: Any, rank: int, world: int) -> Any:
    """This rank's part of ``loader``: samples rank, rank + world, ... of its data set.

    Every sample is seen once over all ranks, so the merged statistics are those of the
    whole data set; the ranks may see one sample more or less, which the ranking allows
    (the backbone runs outside DDP's forward, so there is no collective per batch)."""
    if isinstance(getattr(loader, "sampler", None), DistributedSampler):
        return loader
    if (
        not isinstance(loader, DataLoader)
        or isinstance(loader.dataset, IterableDataset)
        or loader.batch_size is None
    ):
        raise TypeError(
            "under several processes LabelRankerCallback's loader must be a DataLoader with a "
            "batch_size over a map-style data set (it is split among the ranks), or use a "
            f"DistributedSampler; got {type(loader).__name__}"
        )
    workers = loader.num_workers
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=range(rank, len(loader.dataset), world),  # type: ignore[arg-type]
        num_workers=workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context if workers else None,
        persistent_workers=False,  # one pass
    )

"""Devices: pick one ("auto": XLA, then CUDA, then CPU) and the per-device idioms.

XLA (TPUs through torch_xla, or its CPU backend with PJRT_DEVICE=CPU) differs from eager
devices in three ways that matter here: a step's graph runs at ``torch_xla.sync()``,
``torch.inference_mode`` does not work on XLA tensors (``no_grad`` does), and reading a
device value on the host forces a compile-and-run, so it is avoided inside a step.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

import torch

__all__ = [
    "pick_device",
    "is_xla",
    "xla_sync",
    "device_loader",
    "check_amp",
    "no_grad_context",
    "autocast_context",
]


def _xla_configured() -> bool:
    """torch_xla importable and a PJRT device chosen (TPU VMs set it; CPU needs it set)."""
    if importlib.util.find_spec("torch_xla") is None:
        return False
    return bool(os.environ.get("PJRT_DEVICE")) or os.path.exists("/dev/accel0")


def pick_device(device: torch.device | str = "auto") -> torch.device:
    """The device to run on.

    Parameters
    ----------
    device : torch.device or str, default="auto"
        ``"auto"``: an XLA device when torch_xla is importable and configured, else CUDA,
        else CPU. Anything else is passed to ``torch.device`` ("xla" gives torch_xla's).

    Returns
    -------
    torch.device

    Raises
    ------
    TypeError
        ``device`` neither a str nor a torch.device.
    RuntimeError
        A name torch does not know (torch's own error).
    """
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    if device == "auto":
        if _xla_configured():
            device = "xla"
        elif torch.cuda.is_available():
            return torch.device("cuda")
        else:
            return torch.device("cpu")
    if device.split(":")[0] == "xla":
        import torch_xla

        return torch_xla.device()
    return torch.device(device)


def is_xla(device: torch.device) -> bool:
    return torch.device(device).type == "xla"


def xla_sync(device: torch.device) -> None:
    """Cuts and runs the pending XLA graph (a no-op on other devices)."""
    if is_xla(device):
        import torch_xla

        torch_xla.sync()


def device_loader(loader, device: torch.device):
    """``loader`` as the loop on ``device`` iterates it: through torch_xla's
    ``MpDeviceLoader`` on XLA (which moves the batches to the device), as it is elsewhere."""
    if not is_xla(device):
        return loader
    import torch_xla.distributed.parallel_loader as pl

    return pl.MpDeviceLoader(loader, device)


def no_grad_context(device: torch.device):
    """``inference_mode`` where it works, ``no_grad`` on XLA."""
    return torch.no_grad() if is_xla(device) else torch.inference_mode()


def check_amp(amp, *, training: bool = False):
    """``amp`` as the layer takes it: None, a bool, or torch.bfloat16 / torch.float16.
    Training refuses float16: its gradients underflow without loss scaling, which
    ``finetune`` does not do, and the run would go on with lost updates and no error."""
    if amp is None or isinstance(amp, bool):
        return amp
    if amp not in (torch.bfloat16, torch.float16):
        raise TypeError(f"amp must be None, a bool, torch.bfloat16 or torch.float16, got {amp!r}")
    if training and amp == torch.float16:
        raise ValueError(
            "amp=torch.float16 needs loss scaling to train (small gradients underflow to "
            "zero), which finetune does not do: use amp=None (bfloat16 where the device "
            "has it) or amp=False"
        )
    return amp


def _native_bf16(device: torch.device) -> bool:
    """Whether this CUDA device computes in bfloat16 natively (compute capability 8.0 on,
    or ROCm). ``torch.cuda.is_bf16_supported()`` also says yes for older GPUs that only
    emulate it (a T4, a V100), and asks the current device, not ``device``."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


def autocast_context(device: torch.device, amp):
    """Mixed precision: ``amp=None`` means bfloat16 on CUDA devices that support it and on
    TPUs (XLA with ``PJRT_DEVICE`` TPU or unset), full precision on CPU and XLA's CPU
    device (and CUDA GPUs before Ampere, which only emulate bfloat16); ``True``/``False``
    force it; a dtype picks it."""
    check_amp(amp)
    kind = torch.device(device).type
    if amp is None:  # bfloat16 where the hardware has it: CUDA (Ampere on), TPUs
        tpu = kind == "xla" and os.environ.get("PJRT_DEVICE", "TPU").upper() == "TPU"
        amp = (kind == "cuda" and _native_bf16(torch.device(device))) or tpu
    if amp is False:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp is True else amp
    return torch.autocast(device_type=kind, dtype=dtype)

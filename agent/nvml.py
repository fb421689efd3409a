"""NVIDIA's management library (libnvidia-ml) through ctypes, for the `gpus` probe.

No extra dependency: hosts without NVIDIA drivers simply have no library to load,
and the probe is then left out of the snapshot.
"""

from __future__ import annotations

import ctypes


class NvmlError(OSError):
    """An NVML call failed."""


class _Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


_NVML_NOT_SUPPORTED = 3
_NVML_DRIVER_NOT_LOADED = 9
_NVML_TEMPERATURE_GPU = 0


class Nvml:
    """NVIDIA's management library (libnvidia-ml), called through ctypes: no extra dependency."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._handles: dict[int, ctypes.c_void_p] = {}  # valid until nvmlShutdown
        handle = ctypes.c_void_p
        lib.nvmlErrorString.restype = ctypes.c_char_p
        lib.nvmlDeviceGetHandleByIndex_v2.argtypes = [ctypes.c_uint, ctypes.POINTER(handle)]
        lib.nvmlDeviceGetName.argtypes = [handle, ctypes.c_char_p, ctypes.c_uint]
        lib.nvmlDeviceGetUtilizationRates.argtypes = [handle, ctypes.POINTER(_Utilization)]
        lib.nvmlDeviceGetMemoryInfo.argtypes = [handle, ctypes.POINTER(_Memory)]
        lib.nvmlDeviceGetTemperature.argtypes = [handle, ctypes.c_int, ctypes.POINTER(ctypes.c_uint)]

    @classmethod
    def load(cls, library: str = "libnvidia-ml.so.1") -> Nvml | None:
        """The initialised library, None when the host has no NVIDIA driver, NvmlError if it fails."""
        try:
            lib = ctypes.CDLL(library)
            nvml = cls(lib)
            code = lib.nvmlInit_v2()
        except (OSError, AttributeError):  # no library, or one too old to have these functions
            return None
        if code == _NVML_DRIVER_NOT_LOADED:  # the library without a GPU behind it
            return None
        nvml._check(code)  # anything else (no permission to /dev/nvidia*, ...) is worth reporting
        return nvml

    def close(self) -> None:
        """Release the library's resources."""
        self._handles.clear()
        self._lib.nvmlShutdown()

    def _check(self, code: int) -> bool:
        """True on success, False when the device does not support the call; raises otherwise."""
        if code == _NVML_NOT_SUPPORTED:
            return False
        if code != 0:
            message = self._lib.nvmlErrorString(code) or b"unknown error"
            raise NvmlError(f"NVML error {code}: {message.decode('ascii', 'replace')}")
        return True

    def _handle(self, index: int) -> ctypes.c_void_p:
        if index not in self._handles:
            handle = ctypes.c_void_p()
            self._check(self._lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)))
            self._handles[index] = handle
        return self._handles[index]

    def count(self) -> int:
        """Number of GPUs."""
        n = ctypes.c_uint()
        self._check(self._lib.nvmlDeviceGetCount_v2(ctypes.byref(n)))
        return n.value

    def name(self, index: int) -> str:
        """Product name of GPU `index`."""
        buffer = ctypes.create_string_buffer(96)
        self._check(self._lib.nvmlDeviceGetName(self._handle(index), buffer, len(buffer)))
        return buffer.value.decode("utf-8", "replace")

    def utilization(self, index: int) -> int | None:
        """Percent of time a kernel ran on GPU `index` over the last sample period."""
        rates = _Utilization()
        ok = self._check(self._lib.nvmlDeviceGetUtilizationRates(self._handle(index), ctypes.byref(rates)))
        return rates.gpu if ok else None

    def memory(self, index: int) -> tuple[int, int] | tuple[None, None]:
        """Used and total memory of GPU `index`, in bytes."""
        mem = _Memory()
        ok = self._check(self._lib.nvmlDeviceGetMemoryInfo(self._handle(index), ctypes.byref(mem)))
        return (mem.used, mem.total) if ok else (None, None)

    def temperature(self, index: int) -> int | None:
        """Core temperature of GPU `index` in degrees Celsius."""
        value = ctypes.c_uint()
        code = self._lib.nvmlDeviceGetTemperature(
            self._handle(index), _NVML_TEMPERATURE_GPU, ctypes.byref(value)
        )
        return value.value if self._check(code) else None

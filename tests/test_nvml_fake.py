"""The fake NVML itself: pynvml's own ctypes layouts and error classes work against it."""

import ctypes
import shutil
import subprocess

import pynvml
import pytest


@pytest.mark.parametrize(
    "fake_name,pynvml_struct,size",
    [
        ("nvmlFieldValue_t", pynvml.c_nvmlFieldValue_t, 40),
        ("nvmlMemory_v2_t", pynvml.c_nvmlMemory_v2_t, 40),
        ("nvmlMemory_t", pynvml.c_nvmlMemory_t, 24),
        ("nvmlPciInfo_t", pynvml.nvmlPciInfo_t, 68),
        ("nvmlEventData_t", pynvml.c_nvmlEventData_t, 32),
        ("nvmlProcessInfo_t", pynvml.c_nvmlProcessInfo_v3_t, 24),
        ("nvmlTemperature_v1_t", pynvml.c_nvmlTemperature_v1_t, 12),
        ("nvmlUtilization_t", pynvml.c_nvmlUtilization_t, 8),
    ],
)
def test_struct_layouts_match_pynvml(fake_nvml, fake_name, pynvml_struct, size):
    assert ctypes.sizeof(pynvml_struct) == size
    assert fake_nvml.struct_size(fake_name) == size


def test_memory_v2_version_is_checked_like_the_driver_does(fake_nvml):
    assert pynvml.nvmlMemory_v2 == 0x02000028 == (2 << 24) | 40
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        m = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
        assert m.total == m.used + m.free + m.reserved
        with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
            pynvml.nvmlDeviceGetMemoryInfo(handle, version=0x01000028)
    finally:
        pynvml.nvmlShutdown()


def test_errors_reach_pynvml_as_its_exception_classes(fake_nvml):
    fake_nvml.configure("gpus 3\ngpu 1 unsupported power\ngpu 2 lost")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()
    pynvml.nvmlInit()
    try:
        assert pynvml.nvmlDeviceGetCount() == 3
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(1))
        with pytest.raises(pynvml.NVMLError_GpuIsLost) as lost:
            pynvml.nvmlDeviceGetHandleByIndex(2)
        assert str(lost.value) == "GPU is lost"
        with pytest.raises(pynvml.NVMLError_FunctionNotFound):
            pynvml.nvmlDeviceGetBAR1MemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0))
    finally:
        pynvml.nvmlShutdown()


def test_a_lost_gpu_recovers_only_after_a_full_reinitialisation(fake_nvml):
    fake_nvml.configure("gpus 2\ngpu 1 lost")
    pynvml.nvmlInit()
    fake_nvml.command("gpu 1 recover")
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByIndex(1)
    pynvml.nvmlShutdown()
    pynvml.nvmlInit()
    try:
        assert pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(1)).startswith("GPU-")
        assert fake_nvml.init_count() == 2
    finally:
        pynvml.nvmlShutdown()


def test_xid_events_wait_and_time_out_like_nvml(fake_nvml):
    pynvml.nvmlInit()
    try:
        event_set = pynvml.nvmlEventSetCreate()
        handle = pynvml.nvmlDeviceGetHandleByIndex(3)
        pynvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError, event_set)
        with pytest.raises(pynvml.NVMLError_Timeout):
            pynvml.nvmlEventSetWait(event_set, 10)
        fake_nvml.command("gpu 3 xid 48")
        data = pynvml.nvmlEventSetWait(event_set, 1000)
        assert data.eventData == 48
        assert data.eventType == pynvml.nvmlEventTypeXidCriticalError
        same = ctypes.cast(data.device, ctypes.c_void_p).value
        assert same == ctypes.cast(handle, ctypes.c_void_p).value
        pynvml.nvmlEventSetFree(event_set)
    finally:
        pynvml.nvmlShutdown()


def test_bad_commands_are_refused_with_the_line(fake_nvml):
    with pytest.raises(ValueError, match="line 2: unknown feature wattage"):
        fake_nvml.configure("gpus 2\ngpu 0 unsupported wattage")
    with pytest.raises(ValueError, match="no GPU 9"):
        fake_nvml.command("gpu 9 lost")
    with pytest.raises(ValueError, match="recovery_action: 0-7 or unsupported, not 9"):
        fake_nvml.command("gpu 0 recovery_action 9")


def test_the_driver_build_carries_the_driver_soname(fake_nvml_library):
    readelf = shutil.which("readelf")
    assert readelf, "readelf missing: it comes with binutils, which gcc depends on"
    out = subprocess.run([readelf, "-d", str(fake_nvml_library)], capture_output=True, text=True)
    assert "Library soname: [libnvidia-ml.so.1]" in out.stdout

"""NVIDIA's Xid catalog (Ampere and newer): every Xid code's meaning and resolution bucket.

One table for the exporter (which codes it pre-seeds), the alert rules (the severity of each
bucket), the runbooks and the dashboards. The bucket is the catalog's "immediate action":
what the GPU needs before work can use it again. Source: NVIDIA, "Analyzing Xid Errors with
the Xid Catalog" (docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html); codes marked
unused for A100, H100, B100 and GB200 are left out, and codes 162-172 (for which the catalog
gives no bucket) are CONTACT_SUPPORT. Torch-free and source-free: generators import it.
"""

from __future__ import annotations

from typing import NamedTuple


class XidInfo(NamedTuple):
    """One Xid code: NVIDIA's mnemonic, a short description, the immediate-action bucket."""

    mnemonic: str
    description: str
    bucket: str


#: What each immediate-action bucket asks of the operator.
BUCKETS: dict[str, str] = {
    "RESTART_BM": "reboot the node (bare metal)",
    "RESTART_VM": "restart the VM that owns the GPU",
    "RESET_GPU": "reset the GPU (stop its processes, nvidia-smi -r)",
    "XID_154": "do what the GPU's recovery action says (Xid 154)",
    "WORKFLOW_XID_48": "reset the GPU; drain and reset when Xid 63 or 64 came with it",
    "WORKFLOW_NVLINK_ERR": "decode the NVLink error registers (Xid 74); often a GPU reset",
    "WORKFLOW_NVLINK5_ERR": "decode the NVLink5 error (Xid 144-150); reset if Xid 154 says so",
    "RESTART_APP": "restart the application that used the GPU",
    "CHECK_UVM": "reset the GPU if UVM or vGPU is in use, otherwise nothing",
    "CHECK_MECHANICALS": "check the GPU's seating and connections",
    "UPDATE_SWFW": "update the driver and firmware",
    "CONTACT_SUPPORT": "open a support case with NVIDIA or the vendor",
    "WORKFLOW_XID_45": "nothing after another Xid (its cleanup); alone, restart Fabric Manager",
    "IGNORE": "nothing: informational",
}

XID_CATALOG: dict[int, XidInfo] = {
    8: XidInfo("ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT", "GPU stopped processing", "RESTART_APP"),
    11: XidInfo(
        "ROBUST_CHANNEL_GR_ERROR_MISSING_HW",
        "Invalid or corrupted push buffer stream",
        "RESTART_APP",
    ),
    13: XidInfo(
        "ROBUST_CHANNEL_GR_EXCEPTION / ROBUST_CHANNEL_GR_ERROR_SW_NOTIFY",
        "Graphics Engine Exception",
        "RESTART_APP",
    ),
    14: XidInfo(
        "ROBUST_CHANNEL_FAKE_ERROR",
        "Unused (trigger text: Fake or injected error from userspace)",
        "IGNORE",
    ),
    25: XidInfo(
        "ROBUST_CHANNEL_GR_ILLEGAL_NOTIFY", "Invalid or illegal push buffer stream", "RESTART_APP"
    ),
    31: XidInfo("ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT", "GPU memory page fault", "RESTART_APP"),
    32: XidInfo(
        "ROBUST_CHANNEL_PBDMA_ERROR", "Invalid or corrupted push buffer stream", "RESTART_APP"
    ),
    37: XidInfo("ROBUST_CHANNEL_FECS_ERR_UNIMP_FIRMWARE_METHOD", "Driver firmware error", "IGNORE"),
    38: XidInfo("ROBUST_CHANNEL_FECS_ERR_WATCHDOG_TIMEOUT", "Driver firmware error", "IGNORE"),
    39: XidInfo("ROBUST_CHANNEL_CE0_ERROR", "Copy Engine Exception", "RESTART_APP"),
    40: XidInfo("ROBUST_CHANNEL_CE1_ERROR", "Copy Engine Exception", "RESTART_APP"),
    41: XidInfo("ROBUST_CHANNEL_CE2_ERROR", "Copy Engine Exception", "RESTART_APP"),
    43: XidInfo("ROBUST_CHANNEL_RESETCHANNEL_VERIF_ERROR", "GPU stopped processing", "IGNORE"),
    44: XidInfo(
        "ROBUST_CHANNEL_GR_FAULT_DURING_CTXSW",
        "Graphics Engine fault during context switch",
        "IGNORE",
    ),
    45: XidInfo(
        "ROBUST_CHANNEL_PREEMPTIVE_REMOVAL",
        "Preemptive cleanup, due to previous errors (e.g. multiple CUDA apps + DBE)",
        "WORKFLOW_XID_45",
    ),
    46: XidInfo("ROBUST_CHANNEL_GPU_TIMEOUT_ERROR", "GPU stopped processing", "RESET_GPU"),
    48: XidInfo("ROBUST_CHANNEL_GPU_ECC_DBE", "Double Bit ECC Error", "WORKFLOW_XID_48"),
    54: XidInfo(
        "SILENT_RUNNING_PWR_REDUCED_CLOCKING",
        "Auxiliary power is not connected to the GPU board",
        "CHECK_MECHANICALS",
    ),
    60: XidInfo("ROBUST_CHANNEL_SEC2_ERROR", "Video processor exception", "RESTART_APP"),
    62: XidInfo("PMU_HALT_ERROR", "Internal micro-controller halt (newer drivers)", "RESET_GPU"),
    63: XidInfo("INFOROM_DRAM_RETIREMENT_EVENT", "GPU memory remapping event", "IGNORE"),
    64: XidInfo("INFOROM_DRAM_RETIREMENT_FAILURE", "GPU memory remapping failure", "RESET_GPU"),
    66: XidInfo(
        "ROBUST_CHANNEL_FECS_ERR_REG_ACCESS_VIOLATION", "Illegal access by driver", "IGNORE"
    ),
    67: XidInfo("ROBUST_CHANNEL_FECS_ERR_VERIF_VIOLATION", "Illegal access by driver", "IGNORE"),
    68: XidInfo("ROBUST_CHANNEL_NVDEC0_ERROR", "NVDEC0 Exception", "RESTART_APP"),
    69: XidInfo("ROBUST_CHANNEL_GR_CLASS_ERROR", "Graphics Engine class error", "RESTART_APP"),
    70: XidInfo("ROBUST_CHANNEL_CE3_ERROR", "CE3: Unknown Error", "RESTART_APP"),
    71: XidInfo("ROBUST_CHANNEL_CE4_ERROR", "CE4: Unknown Error", "RESTART_APP"),
    72: XidInfo("ROBUST_CHANNEL_CE5_ERROR", "CE5: Unknown Error", "RESTART_APP"),
    74: XidInfo("NVLINK_ERROR", "NVLINK Error", "WORKFLOW_NVLINK_ERR"),
    75: XidInfo("ROBUST_CHANNEL_CE6_ERROR", "CE6: Unknown Error", "RESTART_APP"),
    76: XidInfo("ROBUST_CHANNEL_CE7_ERROR", "CE7: Unknown Error", "RESTART_APP"),
    77: XidInfo("ROBUST_CHANNEL_CE8_ERROR", "CE8: Unknown Error", "RESTART_APP"),
    78: XidInfo("VGPU_START_ERROR", "vGPU Start Error", "UPDATE_SWFW"),
    79: XidInfo(
        "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS", "GPU has fallen off the bus", "RESTART_BM"
    ),
    80: XidInfo("PBDMA_PUSHBUFFER_CRC_MISMATCH", "Corrupted data sent to GPU", "RESTART_APP"),
    82: XidInfo("ROBUST_CHANNEL_NVJPG0_ERROR", "NVJPG0 Error", "RESTART_APP"),
    83: XidInfo("ROBUST_CHANNEL_NVDEC1_ERROR", "NVDEC1 Error", "RESTART_APP"),
    84: XidInfo("ROBUST_CHANNEL_NVDEC2_ERROR", "NVDEC2 Error", "RESTART_APP"),
    85: XidInfo("ROBUST_CHANNEL_CE9_ERROR", "CE9: Unknown Error", "RESTART_APP"),
    86: XidInfo("ROBUST_CHANNEL_OFA0_ERROR", "OFA Exception", "RESTART_APP"),
    88: XidInfo("ROBUST_CHANNEL_NVDEC3_ERROR", "NVDEC3 Error", "RESTART_APP"),
    89: XidInfo("ROBUST_CHANNEL_NVDEC4_ERROR", "NVDEC4 Error", "RESTART_APP"),
    92: XidInfo("EXCESSIVE_SBE_INTERRUPTS", "High single-bit ECC error rate", "IGNORE"),
    93: XidInfo(
        "INFOROM_ERASE_LIMIT_EXCEEDED",
        "Non-fatal violation of provisioned InfoROM wear limit",
        "IGNORE",
    ),
    94: XidInfo("ROBUST_CHANNEL_CONTAINED_ERROR", "Contained memory error", "RESTART_APP"),
    95: XidInfo("ROBUST_CHANNEL_UNCONTAINED_ERROR", "Uncontained memory error", "RESET_GPU"),
    96: XidInfo("ROBUST_CHANNEL_NVDEC5_ERROR", "NVDEC5 Error", "RESTART_APP"),
    97: XidInfo("ROBUST_CHANNEL_NVDEC6_ERROR", "NVDEC6 Error", "RESTART_APP"),
    98: XidInfo("ROBUST_CHANNEL_NVDEC7_ERROR", "NVDEC7 Error", "RESTART_APP"),
    99: XidInfo("ROBUST_CHANNEL_NVJPG1_ERROR", "NVJPG1 Error", "RESTART_APP"),
    100: XidInfo("ROBUST_CHANNEL_NVJPG2_ERROR", "NVJPG2 Error", "RESTART_APP"),
    101: XidInfo("ROBUST_CHANNEL_NVJPG3_ERROR", "NVJPG3 Error", "RESTART_APP"),
    102: XidInfo("ROBUST_CHANNEL_NVJPG4_ERROR", "NVJPG4 Error", "RESTART_APP"),
    103: XidInfo("ROBUST_CHANNEL_NVJPG5_ERROR", "NVJPG5 Error", "RESTART_APP"),
    104: XidInfo("ROBUST_CHANNEL_NVJPG6_ERROR", "NVJPG6 Error", "RESTART_APP"),
    105: XidInfo("ROBUST_CHANNEL_NVJPG7_ERROR", "NVJPG7 Error", "RESTART_APP"),
    106: XidInfo("SMBPBI_TEST_MESSAGE", "SMBPBI Test Message", "IGNORE"),
    107: XidInfo("SMBPBI_TEST_MESSAGE_SILENT", "SMBPBI Test Message Silent", "IGNORE"),
    108: XidInfo("NVLINK_REMOTE_TRANSLATION_ERROR", "Unused (trigger text: N/A; Unused)", "IGNORE"),
    109: XidInfo("ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR", "Context Switch Timeout Error", "RESET_GPU"),
    110: XidInfo("SEC_FAULT_ERROR", "Security Fault Error", "RESET_GPU"),
    119: XidInfo("GSP_RPC_TIMEOUT", "GSP RPC Timeout", "RESET_GPU"),
    120: XidInfo("GSP_ERROR", "GSP Error", "RESET_GPU"),
    121: XidInfo("C2C_ERROR", "C2C Error", "IGNORE"),
    126: XidInfo("ROBUST_CHANNEL_CE10_ERROR", "CE10: Unknown Error", "RESTART_APP"),
    127: XidInfo("ROBUST_CHANNEL_CE11_ERROR", "CE11: Unknown Error", "RESTART_APP"),
    128: XidInfo("ROBUST_CHANNEL_CE12_ERROR", "CE12: Unknown Error", "RESTART_APP"),
    129: XidInfo("ROBUST_CHANNEL_CE13_ERROR", "CE13: Unknown Error", "RESTART_APP"),
    130: XidInfo("ROBUST_CHANNEL_CE14_ERROR", "CE14: Unknown Error", "RESTART_APP"),
    131: XidInfo("ROBUST_CHANNEL_CE15_ERROR", "CE15: Unknown Error", "RESTART_APP"),
    132: XidInfo("ROBUST_CHANNEL_CE16_ERROR", "CE16: Unknown Error", "RESTART_APP"),
    133: XidInfo("ROBUST_CHANNEL_CE17_ERROR", "CE17: Unknown Error", "RESTART_APP"),
    134: XidInfo("ROBUST_CHANNEL_CE18_ERROR", "CE18: Unknown Error", "RESTART_APP"),
    135: XidInfo("ROBUST_CHANNEL_CE19_ERROR", "CE19: Unknown Error", "RESTART_APP"),
    136: XidInfo("ALI_TRAINING_FAIL", "Link Training Failed", "RESET_GPU"),
    137: XidInfo("NVLINK_PRIV_ERR", "NVLink Privilege Error", "IGNORE"),
    139: XidInfo("ROBUST_CHANNEL_OFA1_ERROR", "OFA1 Error", "RESTART_APP"),
    140: XidInfo("UNRECOVERABLE_ECC_ERROR_ESCAPE", "ECC Unrecovered Error", "RESET_GPU"),
    141: XidInfo("ROBUST_CHANNEL_FAST_PATH_ERROR", "CUDA Fast Path Error", "IGNORE"),
    142: XidInfo("ROBUST_CHANNEL_NVENC3_ERROR", "NVENC3 Error", "CONTACT_SUPPORT"),
    143: XidInfo("GPU_INIT_ERROR", "GPU Initialization Error", "RESET_GPU"),
    144: XidInfo("NVLINK_SAW_ERROR", "NVLINK: SAW Error", "WORKFLOW_NVLINK5_ERR"),
    145: XidInfo("NVLINK_RLW_ERROR", "NVLINK: RLW Error", "WORKFLOW_NVLINK5_ERR"),
    146: XidInfo("NVLINK_TLW_ERROR", "NVLINK: TLW Error", "WORKFLOW_NVLINK5_ERR"),
    147: XidInfo("NVLINK_TREX_ERROR", "NVLINK: TREX Error", "WORKFLOW_NVLINK5_ERR"),
    148: XidInfo("NVLINK_NVLPW_CTRL_ERROR", "NVLINK: NVLPW_CTRL Error", "WORKFLOW_NVLINK5_ERR"),
    149: XidInfo("NVLINK_NETIR_ERROR", "NVLINK: NETIR Error", "WORKFLOW_NVLINK5_ERR"),
    150: XidInfo("NVLINK_MSE_ERROR", "NVLINK: MSE Error", "WORKFLOW_NVLINK5_ERR"),
    151: XidInfo("ROBUST_CHANNEL_KEY_ROTATION_ERROR", "Key rotation Error", "RESTART_VM"),
    154: XidInfo("GPU_RECOVERY_ACTION_CHANGED", "GPU Recovery Action Changed", "XID_154"),
    155: XidInfo("NVLINK_SW_DEFINED_ERROR", "NVLINK: SW Defined Error", "RESET_GPU"),
    156: XidInfo("RESOURCE_RETIREMENT_EVENT", "Resource Retirement Event", "RESET_GPU"),
    157: XidInfo("RESOURCE_RETIREMENT_FAILURE", "Resource Retirement Failure", "IGNORE"),
    158: XidInfo("GPU_FATAL_TIMEOUT", "GPU Fatal Timeout", "RESET_GPU"),
    159: XidInfo("ROBUST_CHANNEL_CHI_NON_DATA_ERROR", "CHI Non-Data Error", "CHECK_UVM"),
    160: XidInfo("CHANNEL_RETIREMENT_EVENT", "Channel Retirement Event", "IGNORE"),
    161: XidInfo("CHANNEL_RETIREMENT_FAILURE", "Channel Retirement Failure", "IGNORE"),
    162: XidInfo(
        "PSHC_REENGAGED", "Power Smoothing HW Circuitry capability reengaged", "CONTACT_SUPPORT"
    ),
    163: XidInfo(
        "PSHC_DISENGAGED", "Power Smoothing HW Circuitry capability disengaged", "CONTACT_SUPPORT"
    ),
    164: XidInfo(
        "PSHC_LOW_LIFETIME", "Power Smoothing HW Circuitry low lifetime reached", "CONTACT_SUPPORT"
    ),
    165: XidInfo(
        "PSHC_ZERO_LIFETIME", "Power Smoothing HW Circuitry lifetime exhausted", "CONTACT_SUPPORT"
    ),
    166: XidInfo(
        "NVLINK_SECURE_CRYPTO_ERR",
        "CC traffic seen prior to link properly being configured for encrypted traffic",
        "CONTACT_SUPPORT",
    ),
    167: XidInfo("PCIE_FATAL_TIMEOUT", "PCIE_FATAL_TIMEOUT", "CONTACT_SUPPORT"),
    168: XidInfo(
        "REDUCED_GPU_MEMORY_CAPACITY",
        "Errors found in WPR (write protected region)",
        "CONTACT_SUPPORT",
    ),
    169: XidInfo("SEC2_HALT_ERROR", "Internal micro-controller halt", "CONTACT_SUPPORT"),
    170: XidInfo("NVLINK_SECURE_OTHER", "Interrupt seen in CC mode", "CONTACT_SUPPORT"),
    171: XidInfo(
        "UNCORRECTABLE_DRAM_ERROR",
        "Additional to Xid 48: details of fault to differentiate DRAM/SRAM",
        "CONTACT_SUPPORT",
    ),
    172: XidInfo(
        "UNCORRECTABLE_SRAM_ERROR",
        "Additional to Xid 48: details of fault to differentiate DRAM/SRAM",
        "CONTACT_SUPPORT",
    ),
}

#: Codes the exporter pre-seeds at 0 for every GPU (so the first event is a 0 -> 1 step): the
#: codes whose bucket asks for more than an application restart, and the common app faults.
WATCHED_XIDS: tuple[int, ...] = tuple(
    sorted(
        code
        for code, info in XID_CATALOG.items()
        if info.bucket not in ("IGNORE", "RESTART_APP", "CONTACT_SUPPORT")
        or code in (13, 31, 43, 94)
    )
)


def xid_bucket(code: int) -> str:
    """The immediate-action bucket of `code` (CONTACT_SUPPORT for a code not in the catalog)."""
    info = XID_CATALOG.get(code)
    return info.bucket if info else "CONTACT_SUPPORT"


def xid_meaning(code: int) -> str:
    """A short description of `code` ("unknown Xid" when it is not in the catalog)."""
    info = XID_CATALOG.get(code)
    return info.description if info else "unknown Xid"


def codes_in(buckets: set[str] | frozenset[str]) -> tuple[int, ...]:
    """The codes whose bucket is one of `buckets`, in order."""
    return tuple(code for code, info in XID_CATALOG.items() if info.bucket in buckets)

"""The reused field request (exporter/sources/nvml/fields.py) answers exactly as pynvml's own
nvmlDeviceGetFieldValues does, entry by entry, errors included, on the fake NVML."""

import pynvml
import pytest

from exporter.sources.nvml import fields
from exporter.sources.nvml.fields import FieldRequest, field_value
from exporter.sources.nvml.readers import LINK_STATE, SCALAR_FIELDS, TX

#: Every scalar the source asks, link data and state (link 40 is past the last: InvalidArgument),
#: and an id no driver knows (NotSupported).
REQUEST = [(f, 0) for f in SCALAR_FIELDS] + [(TX, 0), (TX, 17), (LINK_STATE, 3), (LINK_STATE, 40)]
REQUEST += [(9999, 0)]


def answers(values) -> list[tuple[int, int, float | None]]:
    out = []
    for (fid, _scope), fv in zip(REQUEST, values, strict=True):
        ok = fv.nvmlReturn == pynvml.NVML_SUCCESS
        out.append((fid, int(fv.nvmlReturn), field_value(fv) if ok else None))
    return out


@pytest.fixture
def handle(fake_nvml):
    fake_nvml.configure(
        "gpus 1\ngpu 0 link 3 down\ngpu 0 ecc uncorrected 2\ngpu 0 nvlink_error replay 5"
    )
    pynvml.nvmlInit()
    yield pynvml.nvmlDeviceGetHandleByIndex(0)
    pynvml.nvmlShutdown()


def comparable(rows):
    """The NVLink byte counters move between two calls: compare them as present or not."""
    return [(fid, ret, None if fid == TX else v) for fid, ret, v in rows]


def test_answers_match_pynvml_entry_by_entry(handle):
    request = FieldRequest(REQUEST)
    ours = answers(request.ask(handle))
    theirs = answers(pynvml.nvmlDeviceGetFieldValues(handle, REQUEST))
    assert comparable(ours) == comparable(theirs)
    by_id = {(fid, i): v for i, (fid, _ret, v) in enumerate(ours)}
    assert by_id[(LINK_STATE, len(SCALAR_FIELDS) + 2)] == 0  # link 3 is down
    assert ours[-1][1] == pynvml.NVML_ERROR_NOT_SUPPORTED
    assert ours[-2][1] == pynvml.NVML_ERROR_INVALID_ARGUMENT
    again = answers(request.ask(handle))  # the same array asked again: same ids, fresh values
    assert comparable(again) == comparable(ours)


def test_without_pynvmls_lookup_the_public_call_is_used(handle, monkeypatch):
    expected = comparable(answers(FieldRequest(REQUEST).ask(handle)))
    monkeypatch.setattr(fields, "_function_pointer", lambda: None)  # a pynvml without it
    assert comparable(answers(FieldRequest(REQUEST).ask(handle))) == expected


def test_a_failed_call_raises_nvmls_error_class(fake_nvml, handle):
    fake_nvml.command("gpu 0 lost")
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        FieldRequest(REQUEST).ask(handle)


def test_an_unknown_value_type_is_refused_by_name():
    fv = fields.PlainFieldValue()
    fv.fieldId, fv.valueType = 42, 99
    with pytest.raises(ValueError, match="field 42: unknown NVML value type 99"):
        field_value(fv)

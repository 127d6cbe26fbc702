"""`serve` as a real process, the harness on by default: the API on its own listener, the
synthetic load moving the counters on /metrics, /readyz once warmed up, and a clean stop."""

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import run_exporter, series

pytestmark = pytest.mark.e2e


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + "/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_serve_runs_the_harness_api_under_synthetic_load():
    args = ["--backend=simulated", "--simulate.gpus=1", "--collect.interval=0.2"]
    args += ["--harness.kv-cache-memory=1MiB", "--harness.max-prompt-tokens=128"]
    # prompts past the 128-token budget now and then: the load shows the rejections too
    args += ["--harness.load=20", "--harness.load.prompt-tokens=lognormal:64,0.8"]
    args += ["--harness.load.max-tokens=uniform:4,16"]
    with run_exporter(*args, harness=True) as exp:  # no --harness: on because torch is here
        deadline = time.monotonic() + 30
        while True:
            status, _ = exp.get("/readyz")
            m = exp.metrics()
            ok = series(m, "inference_requests_total", outcome="ok")
            rejected = series(m, "inference_requests_total", outcome="rejected")
            if status == 200 and ok and min(ok.values()) >= 10 and max(rejected.values()) >= 1:
                break
            assert time.monotonic() < deadline, f"no load served: readyz {status}, {ok}"
            time.sleep(0.2)
        with urllib.request.urlopen(exp.harness_url + "/v1/models", timeout=10) as response:
            models = json.load(response)
        answer = post(exp.harness_url, {"prompt": "Hello", "max_tokens": 3})
        too_long = post(exp.harness_url, {"prompt": "x" * 200})
    assert exp.process.returncode == 0  # stopped cleanly on SIGTERM
    log = exp.process.stdout.read()
    assert "Traceback" not in log
    assert "inference harness API on http://127.0.0.1:" in log
    assert "synthetic load: 20 requests/s, prompts lognormal:64,0.8 tokens" in log
    assert [d["id"] for d in models["data"]] == ["tiny"]
    assert answer[0] == 200 and answer[1]["usage"]["completion_tokens"] <= 3
    assert too_long[0] == 413 and too_long[1]["error"]["code"] == "prompt_too_long"
    assert series(m, "inference_ready").popitem()[1] == 1
    assert series(m, "exporter_source_up", source="harness").popitem()[1] == 1
    assert series(m, "inference_time_to_first_token_seconds_count").popitem()[1] >= 10
    assert series(m, "gpu_up")  # the simulated fleet beside it

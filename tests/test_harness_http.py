"""The harness's HTTP API through real requests on a real 127.0.0.1 listener: the OpenAI-style
answers, and every admission outcome (413, 400, 503 with Retry-After, 504, a client that goes
away), each moving its inference_requests_total counter and leaking no KV block."""

import asyncio
import json

import aiohttp

from exporter.harness.api.admission import AdmissionLimits
from tests.harness_helpers import run, until
from tests.harness_http_helpers import first_event, moved, parse_events, serving

#: Prompt + new tokens that keep the tiny model busy for about a second and a half on a CPU.
LONG = {"prompt": "hold", "max_tokens": 1000, "ignore_eos": True}
#: Limits that let LONG through.
ROOMY = AdmissionLimits(max_tokens=1000)


def test_models_lists_the_served_model():
    async def scenario():
        async with serving() as s:
            response = await s.client.get("/v1/models")
            return response.status, await response.json()

    status, body = run(scenario())
    assert status == 200
    assert body["object"] == "list"
    [model] = body["data"]
    assert model["id"] == "tiny" and model["object"] == "model"
    assert model["max_model_len"] == 1024 and model["owned_by"] == "gpu-inference-exporter"


def test_a_completion_answers_in_openai_shape_and_counts_ok():
    async def scenario():
        async with serving() as s:
            before = s.counts()
            body = {"prompt": "Hello", "max_tokens": 12, "temperature": 0, "ignore_eos": True}
            response = await s.post(body)
            answer = await response.json()
            await s.no_block_leaked()
            return response.status, answer, moved(before, s.counts())

    status, answer, counted = run(scenario())
    assert status == 200
    assert answer["object"] == "text_completion" and answer["model"] == "tiny"
    assert answer["id"].startswith("cmpl-") and isinstance(answer["created"], int)
    [choice] = answer["choices"]
    assert choice["finish_reason"] == "length" and choice["index"] == 0
    assert isinstance(choice["text"], str)
    # the byte tokenizer: BOS and one token per byte of "Hello"
    assert answer["usage"] == {"prompt_tokens": 6, "completion_tokens": 12, "total_tokens": 18}
    assert counted == {"ok": 1}


def test_streaming_sends_one_data_event_per_token_then_done():
    body = {"prompt": "Stream me", "max_tokens": 20, "temperature": 0, "ignore_eos": True}

    async def scenario():
        async with serving() as s:
            whole = await (await s.post(body)).json()
            before = s.counts()
            response = await s.post({**body, "stream": True})
            text = await response.text()
            await s.no_block_leaked()
            return whole, response, text, moved(before, s.counts())

    whole, response, text, counted = run(scenario())
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    assert text.endswith("data: [DONE]\n\n")
    events = parse_events(text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len(chunks) == 20  # one per generated token
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"] != whole["id"]
    assert all(c["object"] == "text_completion" and c["model"] == "tiny" for c in chunks)
    reasons = [c["choices"][0]["finish_reason"] for c in chunks]
    assert reasons == [None] * 19 + ["length"]
    # greedy: the streamed pieces add up to the same text as the whole answer
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert counted == {"ok": 1}


def test_a_prompt_over_the_budget_is_413_before_it_reaches_the_engine():
    fifty_thousand_words = " ".join(["word"] * 50_000)

    async def scenario():
        async with serving(limits=AdmissionLimits(max_prompt_tokens=64)) as s:
            before, tokens_before = s.counts(), s.engine.metrics.snapshot().prompt_tokens
            answers = []
            for prompt in (fifty_thousand_words, "x" * 64):  # 65 tokens with BOS
                response = await s.post({"prompt": prompt, "stream": True})
                answers.append((response.status, await response.json()))
            prompt_tokens = s.engine.metrics.snapshot().prompt_tokens - tokens_before
            await s.no_block_leaked()
            return answers, prompt_tokens, moved(before, s.counts())

    answers, prompt_tokens, counted = run(scenario())
    for status, body in answers:
        assert status == 413
        assert body["error"]["code"] == "prompt_too_long" and body["error"]["param"] == "prompt"
        assert "at most 64 prompt tokens" in body["error"]["message"]
    assert "the prompt is 250000 tokens" in answers[0][1]["error"]["message"]
    assert "the prompt is 65 tokens" in answers[1][1]["error"]["message"]
    assert counted == {"rejected": 2}
    assert prompt_tokens == 0  # the engine never saw them


def test_max_tokens_over_the_budget_is_400():
    async def scenario():
        async with serving(limits=AdmissionLimits(max_tokens=100)) as s:
            before = s.counts()
            response = await s.post({"prompt": "hi", "max_tokens": 101})
            answer = await response.json()
            await s.no_block_leaked()
            return response.status, answer, moved(before, s.counts())

    status, answer, counted = run(scenario())
    assert status == 400
    assert answer["error"]["param"] == "max_tokens"
    assert answer["error"]["code"] == "max_tokens_too_large"
    assert "max_tokens is 101" in answer["error"]["message"]
    assert "at most 100 tokens" in answer["error"]["message"]
    assert answer["error"]["type"] == "invalid_request_error"
    assert counted == {"rejected": 1}


#: (body, status, param, words the message must contain)
BAD_REQUESTS = [
    (b"{nope", 400, None, "not valid JSON: Expecting property name"),
    (b"\xff\xfe{}", 400, None, "not UTF-8"),
    (b"[1, 2]", 400, None, "must be a JSON object, got list"),
    ({"max_tokens": 5}, 400, "prompt", "prompt is required"),
    ({"prompt": 5}, 400, "prompt", "prompt must be a string or a list of token ids, got int"),
    ({"prompt": None}, 400, "prompt", "got null"),
    ({"prompt": ["a", "b"]}, 400, "prompt", "one prompt per request"),
    ({"prompt": [1, "a", 2.5]}, 400, "prompt", "prompt must be a string or a list of integer"),
    ({"prompt": []}, 400, "prompt", "prompt must not be empty"),
    ({"prompt": "x", "max_tokens": "10"}, 400, "max_tokens", 'must be an integer, got "10"'),
    ({"prompt": "x", "max_tokens": 2.5}, 400, "max_tokens", "must be an integer, got 2.5"),
    ({"prompt": "x", "max_tokens": True}, 400, "max_tokens", "must be an integer, got true"),
    ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens", "at least 1, got 0"),
    ({"prompt": "x", "temperature": "hot"}, 400, "temperature", 'a number, got "hot"'),
    ({"prompt": "x", "temperature": 2.5}, 400, "temperature", "in [0, 2], got 2.5"),
    ({"prompt": "x", "stream": "yes"}, 400, "stream", 'true or false, got "yes"'),
    ({"prompt": "x", "ignore_eos": 1}, 400, "ignore_eos", "true or false, got 1"),
    ({"prompt": "x", "model": 7}, 400, "model", "model must be a string, got int"),
    ({"prompt": "x", "n": 3}, 400, "n", "n=3 is not supported"),
    ({"prompt": "x", "stop": ["\n"]}, 400, "stop", "is not supported"),
    ({"prompt": [300]}, 400, "prompt", "prompt token ids must lie in [0, 258)"),
    ({"prompt": "x" * 500, "max_tokens": 600}, 400, "prompt", "exceed the model's context"),
    ({"prompt": "x", "model": "gpt-4"}, 404, "model", "this server serves 'tiny'"),
]


def test_malformed_and_wrongly_typed_requests_are_400_saying_what_was_wrong():
    limits = AdmissionLimits(max_prompt_tokens=1000, max_tokens=1000)

    async def scenario():
        async with serving(limits=limits) as s:
            before = s.counts()
            answers = []
            for body, *_ in BAD_REQUESTS:
                response = await s.post(body)
                answers.append((response.status, await response.json()))
            await s.no_block_leaked()
            return answers, moved(before, s.counts())

    answers, counted = run(scenario())
    failures = []
    for (body, status, param, words), (got_status, answer) in zip(
        BAD_REQUESTS, answers, strict=True
    ):
        error = answer["error"]
        if got_status != status or error["param"] != param or words not in error["message"]:
            failures.append(f"{body!r}: {got_status} {json.dumps(error)}")
    assert not failures, "\n".join(failures)
    # each counted once, whether the edge (types, budget) or the engine (context) refused it
    assert counted == {"rejected": len(BAD_REQUESTS)}


def test_kv_cache_nearly_full_sheds_with_503_and_retry_after():
    # 32 blocks of 16 tokens; a 300-token prompt holds 19 of them (59%)
    limits = AdmissionLimits(shed_kv_utilization=0.5, max_prompt_tokens=400)

    async def scenario():
        async with serving(blocks=32, limits=limits) as s:
            before = s.counts()
            holder = await s.post({**LONG, "prompt": "x" * 299, "max_tokens": 200, "stream": True})
            await first_event(holder)
            await until(lambda: s.engine.stats.kv_utilization >= 0.5)
            shed = await s.post({"prompt": "hi", "max_tokens": 4})
            answer = await shed.json()
            holder.close()  # the client goes away: its request is aborted
            await s.no_block_leaked()
            return shed, answer, moved(before, s.counts())

    shed, answer, counted = run(scenario())
    assert shed.status == 503
    assert shed.headers["Retry-After"] in ("1", "2")
    assert answer["error"]["code"] == "kv_cache_full"
    assert answer["error"]["type"] == "overloaded_error"
    assert "requests are shed from 50%" in answer["error"]["message"]
    assert counted == {"shed": 1, "cancelled": 1}


def test_a_full_queue_sheds_with_503_and_retry_after():
    # one request runs at a time; the queue holds one
    limits = AdmissionLimits(max_waiting=1)

    async def scenario():
        async with serving(limits=limits, max_num_seqs=1) as s:
            before = s.counts()
            running = s.engine.stream("hold", 1000, ignore_eos=True)  # no deadline
            await anext(running)
            queued = asyncio.create_task(s.post({"prompt": "wait", "max_tokens": 4}))
            await until(lambda: s.engine.stats.waiting == 1)
            shed = await s.post({"prompt": "one too many", "max_tokens": 4})
            answer = await shed.json()
            assert running.completion is None  # the queue was still full when it was refused
            await running.aclose()
            served = await queued  # the queued one then runs
            await s.no_block_leaked()
            return shed, answer, served.status, moved(before, s.counts())

    shed, answer, queued_status, counted = run(scenario())
    assert shed.status == 503 and shed.headers["Retry-After"] in ("1", "2")
    assert answer["error"]["code"] == "queue_full"
    assert "1 requests waiting, at most 1" in answer["error"]["message"]
    assert queued_status == 200
    assert counted == {"shed": 1, "cancelled": 1, "ok": 1}


def test_the_deadline_is_504_queued_or_running_and_frees_the_blocks():
    limits = AdmissionLimits(request_timeout=0.2, max_tokens=1000)

    async def scenario():
        async with serving(limits=limits, max_num_seqs=1) as s:
            before = s.counts()
            # whole answer: the deadline passes while it runs
            whole = await s.post(LONG)
            whole_answer = await whole.json()
            # streamed, past its first token: the last event says why, then [DONE]
            streamed = await s.post({**LONG, "stream": True})
            events = parse_events(await streamed.text())
            # streamed, queued behind a request without a deadline: no header sent yet, so 504
            running = s.engine.stream("hold", 1000, ignore_eos=True)
            await anext(running)
            queued = await s.post({**LONG, "stream": True})
            queued_answer = await queued.json()
            assert running.completion is None
            await running.aclose()
            await s.no_block_leaked()
            return whole, whole_answer, streamed, events, queued, queued_answer, before, s

    whole, whole_answer, streamed, events, queued, queued_answer, before, s = run(scenario())
    assert whole.status == 504
    assert whole_answer["error"]["code"] == "timeout"
    assert whole_answer["error"]["type"] == "timeout_error"
    assert "timed out after" in whole_answer["error"]["message"]
    assert streamed.status == 200
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "timeout"
    assert 1 <= len(events) - 2 < 1000  # some tokens, then the deadline
    assert queued.status == 504 and queued_answer["error"]["code"] == "timeout"
    assert "(0 of 1000 tokens generated)" in queued_answer["error"]["message"]
    assert moved(before, s.counts()) == {"timeout": 3, "cancelled": 1}


def test_a_client_that_disconnects_mid_stream_frees_its_blocks_at_once():
    async def scenario():
        async with serving(limits=ROOMY) as s:
            before = s.counts()
            tokens_before = s.engine.metrics.snapshot().generation_tokens
            response = await s.post({**LONG, "stream": True})
            await first_event(response)
            await until(lambda: s.engine.stats.kv_blocks_used > 0)
            response.close()  # drops the connection
            await s.no_block_leaked()
            generated = s.engine.metrics.snapshot().generation_tokens - tokens_before
            return generated, moved(before, s.counts())

    generated, counted = run(scenario())
    assert counted == {"cancelled": 1}
    assert generated < 1000  # aborted, not run to its end


def test_a_client_that_disconnects_while_queued_is_dropped_before_it_runs():
    # Nothing is written to a queued request's connection: only the handler's cancellation
    # on disconnect can notice that it went away.
    async def scenario():
        async with serving(limits=ROOMY, max_num_seqs=1) as s:
            before = s.counts()
            running = s.engine.stream("hold", 1000, ignore_eos=True)
            await anext(running)
            request = asyncio.create_task(s.post({**LONG, "stream": True}))
            await until(lambda: s.engine.stats.waiting == 1)
            request.cancel()  # closes the connection
            await asyncio.gather(request, return_exceptions=True)
            await until(lambda: s.engine.stats.waiting == 0)
            still_running = running.completion is None
            await running.aclose()
            await s.no_block_leaked()
            return still_running, moved(before, s.counts())

    still_running, counted = run(scenario())
    assert still_running  # dropped while the request ahead of it was still generating
    assert counted == {"cancelled": 2}


def test_before_the_warm_up_completions_are_shed_and_models_is_503():
    async def scenario():
        async with serving(start=False) as s:
            before = s.counts()
            models = await s.client.get("/v1/models")
            completion = await s.post({"prompt": "too early"})
            answer = await completion.json()
            counted = moved(before, s.counts())
            s.engine.start()
            await s.engine.wait_ready(30)
            after = await s.post({"prompt": "now", "max_tokens": 2})
            await s.no_block_leaked()
            return models.status, completion, answer, counted, after.status

    models_status, completion, answer, counted, after_status = run(scenario())
    assert models_status == 503
    assert completion.status == 503 and completion.headers["Retry-After"] in ("1", "2")
    assert answer["error"]["code"] == "not_ready"
    assert counted == {"shed": 1}
    assert after_status == 200


def test_unknown_paths_and_methods_answer_json_errors():
    async def scenario():
        async with serving() as s:
            missing = await s.client.get("/v1/chat")
            wrong = await s.client.get("/v1/completions")
            return (missing, await missing.json()), (wrong, await wrong.json()), s.counts()

    (missing, missing_body), (wrong, wrong_body), counts = run(scenario())
    assert missing.status == 404 and missing_body["error"]["code"] == "not_found"
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST"
    assert wrong_body["error"]["code"] == "method_not_allowed"
    assert sum(counts.values()) == 0  # not requests for a completion: nothing counted


def test_a_body_over_the_size_limit_is_413_unread():
    async def scenario():
        async with serving() as s:
            before = s.counts()
            body = json.dumps({"prompt": "x" * (2**20 + 1)}).encode()
            response = await s.post(body)
            return response.status, await response.json(), moved(before, s.counts())

    status, answer, counted = run(scenario())
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    assert counted == {"rejected": 1}


def test_stopping_the_listener_lets_requests_in_flight_end_and_refuses_new_ones():
    limits = AdmissionLimits(max_tokens=1000, request_timeout=0.5)

    async def scenario():
        async with serving(limits=limits) as s:
            before = s.counts()
            in_flight = asyncio.create_task(s.post({**LONG, "stream": True}))
            await until(lambda: s.engine.stats.running == 1)
            await s.server.stop()  # what serve does on SIGTERM, before stopping the engine
            response = await in_flight
            events = parse_events(await response.text())
            try:
                await s.post({"prompt": "late"})
                refused = False
            except aiohttp.ClientConnectionError:
                refused = True
            await s.no_block_leaked()
            return events, refused, moved(before, s.counts())

    events, refused, counted = run(scenario())
    assert events[-2]["error"]["code"] == "timeout"  # ran to its deadline while stopping
    assert events[-1] == "[DONE]"
    assert refused
    assert counted == {"timeout": 1}

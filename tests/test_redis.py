"""`nmt serve --redis`: quotas and the translation cache shared through a real redis-server that the tests start,
kill, hang (SIGSTOP) and restart empty. The stores' own tests are quick; the ones that start `nmt serve` are slow."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from server_process import ServerProcess
from system_programs import RedisServer, metric, metrics

from serve.cache import SharedCache, TranslationCache, translate_with_cache
from serve.keys import KeyLimits
from serve.quota import DAY, MINUTE, UNREACHABLE_RETRY, QuotaExceeded, SharedQuotaStore, Windows
from serve.redisconn import RETRY_INTERVAL, check_url

FAST = ["--threads", "1", "--batch-timeout", "0.002", "--health-open"]
TIMEOUT = 0.25  # --redis-timeout of these tests (the default)
PROMPT = 1.5  # seconds within which an answer counts as not held up by Redis (timeout + a loaded machine's slack)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def _charge(store: SharedQuotaStore, key: KeyLimits, window: str, amount: int, limit: int) -> int:
    """0 when admitted, else the Retry-After of the refusal."""
    try:
        store.charge(key, window, amount, limit)
    except QuotaExceeded as e:
        return e.retry_after
    return 0


def _stores(url: str, n: int, fail: str = "open", windows: Windows = Windows()) -> list[SharedQuotaStore]:
    key = KeyLimits("k", 7, 100)
    return [SharedQuotaStore.create([key], windows, url, fail) for _ in range(n)]


# ----- the stores, against a real Redis -------------------------------------------------------------------------


def test_redis_url_is_checked():
    assert check_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    for bad in ("http://127.0.0.1:6379", "127.0.0.1:6379", "redis://host:port/0"):
        with pytest.raises(ValueError):
            check_url(bad)


def test_two_replicas_grant_a_key_exactly_its_limits(redis_server):
    """Two stores (two replicas) charging one key from 8 threads at once: exactly 7 requests of the minute pass,
    the rest are refused with a Retry-After within the window; the characters of a day add up across both."""
    stores = _stores(redis_server.url, 2)
    key = KeyLimits("k", 7, 100)
    try:
        with ThreadPoolExecutor(8) as pool:
            retries = list(pool.map(lambda i: _charge(stores[i % 2], key, MINUTE, 1, 7), range(30)))
        assert retries.count(0) == 7
        assert all(1 <= r <= 60 for r in retries if r)
        assert _charge(stores[0], key, DAY, 60, 100) == 0
        assert 1 <= _charge(stores[1], key, DAY, 50, 100) <= 86400  # 110 > 100: refused, and not counted
        assert _charge(stores[1], key, DAY, 40, 100) == 0  # so 40 more still fit
        assert _charge(stores[0], key, DAY, 1, 100) > 0
        with pytest.raises(QuotaExceeded) as refused:  # larger than the limit itself: 413, never admitted
            stores[0].charge(key, DAY, 101, 100)
        assert refused.value.retry_after == 0
        assert not any(b"k" in name.split(b":")[-1] for name in redis_server.command("KEYS", "*"))  # hashed ids
    finally:
        for store in stores:
            store.remove()


def test_moving_window_never_admits_more_than_the_limit_in_any_window(redis_server):
    """A 2-second window of 3: after 3 hits the 4th waits until the first hit is 2 s old, not until a boundary."""
    key = KeyLimits("k", 3, None)
    (store,) = _stores(redis_server.url, 1, windows=Windows(2, 10))
    try:
        start = time.monotonic()
        assert [_charge(store, key, MINUTE, 1, 3) for _ in range(3)] == [0, 0, 0]
        while _charge(store, key, MINUTE, 1, 3) != 0:
            assert time.monotonic() - start < 4
            time.sleep(0.05)
        assert time.monotonic() - start >= 1.9
    finally:
        store.remove()


def test_fail_open_counts_on_this_replica_and_recovers(redis_server):
    """Redis killed: each charge answers at once from the local count (a key still gets at most its limit per
    replica); Redis back, empty: the next charge after the retry interval counts in Redis again."""
    (store,) = _stores(redis_server.url, 1)
    key = KeyLimits("k", 7, 100)
    try:
        assert _charge(store, key, MINUTE, 1, 7) == 0
        redis_server.stop()
        started = time.monotonic()
        answers = [_charge(store, key, MINUTE, 1, 7) for _ in range(9)]
        assert time.monotonic() - started < PROMPT
        assert answers.count(0) == 7 and all(a > 0 for a in answers[7:])  # the local count, from zero
        redis_server.start()
        time.sleep(RETRY_INTERVAL + 0.2)
        assert _charge(store, key, MINUTE, 1, 7) == 0
        assert store.breaker.up
        assert redis_server.command("KEYS", "nmt-quota*")  # counted in Redis again
    finally:
        store.remove()


def test_fail_closed_refuses_with_retry_after_and_a_hung_redis_costs_one_timeout(redis_server):
    """--redis-fail closed: Redis hung (SIGSTOP): the first charge waits at most the timeout, the next ones are
    refused at once (429, Retry-After); unlimited keys are never asked about; Redis resumed: admitted again."""
    (store,) = _stores(redis_server.url, 1, fail="closed")
    key = KeyLimits("k", 7, 100)
    try:
        assert _charge(store, key, MINUTE, 1, 7) == 0
        redis_server.pause()
        started = time.monotonic()
        assert _charge(store, key, MINUTE, 1, 7) == UNREACHABLE_RETRY
        assert time.monotonic() - started < TIMEOUT + 0.5
        started = time.monotonic()
        assert [_charge(store, key, DAY, 5, 100) for _ in range(5)] == [UNREACHABLE_RETRY] * 5
        assert time.monotonic() - started < 0.2  # the breaker is open: no Redis round trip
        store.charge(key, MINUTE, 1, None)  # no limit: nothing to count
        redis_server.resume()
        time.sleep(RETRY_INTERVAL + 0.2)
        assert _charge(store, key, MINUTE, 1, 7) == 0
    finally:
        redis_server.resume()
        store.remove()


class Hyp:
    def __init__(self, text: str, score: float):
        self.text, self.score = text, score


def test_shared_cache_reads_back_exactly_and_expires(redis_server):
    cache = SharedCache(redis_server.url, ttl=30)
    hypotheses = [Hyp("Ein Mann 🚲 fährt.", -12.476128578186035), Hyp("", 0.1 + 0.2), Hyp("x\u2028y", -1e-300)]
    key = cache.key("de-en|abc|lp=1.0|fp32", "Ein Mann fährt.", 5, 3, None)
    assert key != cache.key("de-en|abc|lp=1.0|fp32", "Ein Mann fährt.", 5, 3, 50)  # every option is in the key
    assert key != cache.key("de-en|abd|lp=1.0|fp32", "Ein Mann fährt.", 5, 3, None)  # and the weights
    cache.put_many({key: hypotheses})
    (found,) = cache.get_many([key])
    assert [(h.text, h.score) for h in found] == [(h.text, h.score) for h in hypotheses]
    assert json.dumps([h.score for h in found]) == json.dumps([h.score for h in hypotheses])
    assert 0 < redis_server.command("TTL", key) <= 30
    assert cache.get_many([key[:-1] + "0"]) == [None]


def test_two_workers_share_translations_and_a_dead_redis_is_a_miss(redis_server):
    """Worker B (its own empty cache) finds what worker A translated; with Redis down both translate, promptly."""
    calls: list[list[str]] = []

    def translate(texts, beam_size, n_best, max_length):
        calls.append(list(texts))
        return [[Hyp(t.upper(), -float(len(t)) / 3)] for t in texts]

    shared = [SharedCache(redis_server.url, ttl=60), SharedCache(redis_server.url, ttl=60)]
    local = [TranslationCache(100, 1 << 20), TranslationCache(100, 1 << 20)]
    counts: dict[str, int] = {}
    first, hits = translate_with_cache(local[0], "m", translate, ["a", "b", "a"], 5, 1, None, shared[0], counts)
    assert hits == 0 and counts == {"hits": 0, "misses": 2} and calls == [["a", "b"]]
    second, hits = translate_with_cache(local[1], "m", translate, ["b", "a", "c"], 5, 1, None, shared[1], counts)
    assert hits == 0 and counts == {"hits": 2, "misses": 1} and calls[-1] == ["c"]
    assert [(h.text, h.score) for h in second[0]] == [(h.text, h.score) for h in first[1]]
    third, hits = translate_with_cache(local[1], "m", translate, ["a", "b"], 5, 1, None, shared[1], counts)
    assert hits == 2 and calls[-1] == ["c"]  # the worker's own cache answers first
    redis_server.stop()
    started = time.monotonic()
    for cache in shared:
        result, _ = translate_with_cache(None, "m", translate, ["d"], 5, 1, None, cache, counts)
        assert result[0][0].text == "D"
    assert time.monotonic() - started < PROMPT
    assert not shared[0].breaker.up


# ----- nmt serve with a Redis that goes away ----------------------------------------------------------------------

KEYS = "limited requests_per_minute=1000 characters_per_day=1000000\nfree\n"


def _post(server: ServerProcess, key: str, text: str) -> tuple[int, float, dict]:
    started = time.monotonic()
    response = server.post({"text": text}, headers={"X-API-Key": key})
    return response.status_code, time.monotonic() - started, {k.lower(): v for k, v in response.headers.items()}


def _wait_redis_up(server: ServerProcess, redis_server: RedisServer, texts: Iterator[str], timeout: float = 15) -> None:
    """Post until every process of the server reaches Redis again for quotas and cache (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for key in ("limited", "limited"):
            assert _post(server, key, next(texts))[0] == 200
        samples = metrics(server.url, **{"X-API-Key": "free"})
        if metric(samples, "nmt_redis_up", use="quota") == 1 and metric(samples, "nmt_redis_up", use="cache") == 1:
            return
        time.sleep(0.3)
    raise AssertionError(f"Redis not used again after {timeout} s:\n{server.log()[-2000:]}")


@pytest.mark.slow
def test_server_rides_out_redis_down_at_start_killed_hung_and_restarted_empty(tiny_run, tmp_path):
    """Fail open (the default): whatever Redis does, every request is answered 200 promptly; the metrics and the log
    say when Redis is unreachable, and the server uses it again on its own once it answers."""
    redis_server = RedisServer(tmp_path)  # not started: down at start
    keys = tmp_path / "keys.txt"
    keys.write_text(KEYS)
    server = ServerProcess.ready(tiny_run, tmp_path / "server.log", *FAST, "--keys", str(keys),
                                 "--redis", redis_server.url, "--workers", "1")  # fmt: skip
    texts = iter(f"Ein Mann {i} fährt Fahrrad." for i in range(10_000))  # new sentences: each asks the cache
    try:
        assert "does not answer" in server.log()
        for key in ("limited", "free", "limited"):
            status, seconds, _ = _post(server, key, next(texts))
            assert status == 200 and seconds < PROMPT
        samples = metrics(server.url, **{"X-API-Key": "free"})
        assert metric(samples, "nmt_redis_up", use="quota") == 0 and metric(samples, "nmt_redis_up", use="cache") == 0
        assert metric(samples, "nmt_redis_errors_total", use="quota") >= 1
        server.log_line(lambda line: "Redis unreachable for the quota" in line)

        redis_server.start()  # comes up: used again without a restart of the server
        _wait_redis_up(server, redis_server, texts)
        assert redis_server.command("KEYS", "nmt-quota*") and redis_server.command("KEYS", "nmt-tc:*")

        for trouble, repair in ((redis_server.stop, redis_server.start), (redis_server.pause, redis_server.resume)):
            trouble()  # killed mid-traffic, then hung (SIGSTOP: connections accepted, never answered)
            results = [_post(server, key, next(texts)) for key in ("limited", "free") * 4]
            assert [status for status, _, _ in results] == [200] * 8
            assert max(seconds for _, seconds, _ in results) < PROMPT, results
            repair()  # back, empty after the kill
            _wait_redis_up(server, redis_server, texts)
        assert "Redis reachable again" in server.log()
        assert " 500 " not in server.log() and " 503 " not in server.log()
    finally:
        if redis_server.proc is not None and redis_server.proc.poll() is None:
            redis_server.resume()
        server.stop()
        redis_server.stop()


@pytest.mark.slow
def test_fail_closed_refuses_limited_keys_while_redis_is_down(tiny_run, tmp_path):
    """--redis-fail closed: a key with limits gets 429 with Retry-After (never a 5xx) while Redis is down, a key
    without limits is served; Redis back: served again; its quota and cache keys reappear."""
    redis_server = RedisServer(tmp_path).start()
    keys = tmp_path / "keys.txt"
    keys.write_text(KEYS)
    server = ServerProcess.ready(tiny_run, tmp_path / "server.log", *FAST, "--keys", str(keys),
                                 "--redis", redis_server.url, "--redis-fail", "closed")  # fmt: skip
    texts = iter(f"Eine Frau {i} liest." for i in range(10_000))
    try:
        assert _post(server, "limited", next(texts))[0] == 200
        redis_server.stop()
        for _ in range(3):
            status, seconds, headers = _post(server, "limited", next(texts))
            assert status == 429 and int(headers["retry-after"]) == UNREACHABLE_RETRY and seconds < PROMPT
            status, seconds, _ = _post(server, "free", next(texts))
            assert status == 200 and seconds < PROMPT
        redis_server.start()
        deadline = time.monotonic() + 10
        while _post(server, "limited", next(texts))[0] != 200:
            assert time.monotonic() < deadline, server.log()[-2000:]
            time.sleep(0.2)
    finally:
        server.stop()
        redis_server.stop()


@pytest.mark.slow
def test_shared_hit_is_byte_identical_to_the_translation(tiny_run, tmp_path):
    """Without a worker cache (--cache-size 0) a repeated request is answered from Redis: same bytes as the first
    answer, counted as a shared hit."""
    redis_server = RedisServer(tmp_path).start()
    server = ServerProcess.ready(tiny_run, tmp_path / "server.log", *FAST, "--redis", redis_server.url,
                                 "--cache-size", "0")  # fmt: skip
    try:
        body = {"texts": ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."], "beam_size": 3, "n_best": 2}
        first = server.post(body)
        second = server.post(body)
        assert first.status_code == second.status_code == 200
        assert first.content == second.content
        samples = metrics(server.url)
        assert metric(samples, "nmt_shared_cache_hits_total") == 2
        assert metric(samples, "nmt_shared_cache_misses_total") == 2
        assert metric(samples, "nmt_cache_hits_total") == 0
    finally:
        server.stop()
        redis_server.stop()

"""`serve --ray`, really run: one local Ray cluster for the module (loopback, 2 CPUs, no dashboard),
the app deployed on it as a Ray Serve application, every request through Ray's HTTP proxy. Nothing of
Ray or of the server is mocked. The tests run in file order on one xdist worker (`--dist loadscope`:
a module is one unit of work), on one cluster; `serve --ray` with a cluster of its own is in
test_ray_own_cluster.py, free to run on the other worker meanwhile."""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'prelu-deploy[ray]')")
serve = pytest.importorskip("ray.serve")
from ray.serve.context import _get_global_client  # noqa: E402

from prelu_deploy.runners.registry import get_runner  # noqa: E402
from prelu_deploy.serve.ray.app import APP_NAME, DEPLOYMENT, build, deploy  # noqa: E402
from prelu_deploy.serve.ray.driver import STOP_S, delete_app  # noqa: E402
from prelu_deploy.serve.ray.options import RayOptions, haproxy_binary, ingress_env  # noqa: E402
from prelu_deploy.serve.settings import Settings  # noqa: E402

from ..server import Endpoint, free_port  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The `metrics_interval_s` field:DeprecationWarning"),
]
SAMPLES = Path(__file__).resolve().parents[2] / "models" / "samples"
SETTINGS = Settings(threads=1, max_queue_delay_ms=2)
INGRESS = "haproxy" if haproxy_binary() else "proxy"  # serve --ray's default where it can run
needs_haproxy = pytest.mark.skipif(
    INGRESS != "haproxy",
    reason="no HAProxy binary (ray[serve] brings one on Linux; "
    "or apt-get install haproxy): the cluster runs Ray's Python proxy instead",
)


def _app_details(name: str = APP_NAME) -> dict | None:
    """What Ray's controller holds of application `name` (the dict serve.status() is made from: serve.status()
    also validates it into pydantic models, cloudpickling each deployment's config — ~20 ms of CPU a call,
    too much for a condition polled every 0.1 s)."""
    return _get_global_client().get_serve_details()["applications"].get(name)


def _running() -> int:
    """RUNNING replicas of the app (serve.status()'s replica_states["RUNNING"], counted from the same dict)."""
    app = _app_details()
    deployment = app and app["deployments"].get(DEPLOYMENT)  # none yet while an app is being deployed
    return sum(r["state"] == "RUNNING" for r in deployment["replicas"]) if deployment else 0


def _wait_for(condition, timeout_s: float, step_s: float = 0.1) -> float:
    """Seconds until `condition()` held; fails the test past `timeout_s`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s} s"
        time.sleep(step_s)
    return time.monotonic() - start


def _delete(name: str) -> None:
    """Delete an application and wait until the controller holds it no more (what serve.delete does,
    polling every 0.2 s instead of every second: serve --ray's own way, serve/ray/driver.py)."""
    assert delete_app(name, 60), f"application {name} still there after 60 s"


SLOT = "prelu_replica_slot"  # a custom resource: one on each node of the second-node test
TWO = RayOptions(replicas=2, cpus_per_replica=0.5, health_check_period_s=1)
deployed = {"options": None}  # what the app runs now: tests that redeploy say so, tests that need 2 replicas restore them


def _start_node(head: bool, **params):
    """A Ray node on this machine, its processes started from this process and their death tied to it: a
    Node of Ray's, as ray.init and `ray start` make, but with no log monitor (this module's drivers take
    no logs: log_to_driver=False), which neither lets one turn off (Ray's own multi-node tests make
    nodes this way: ray.cluster_utils.Cluster.add_node)."""
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    return Node(RayParams(include_log_monitor=False, **params), head=head, shutdown_at_exit=False, spawn_reaper=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster with Serve's default ingress of `serve --ray` (HAProxy in front of the replicas'
    own HTTP servers) on a free loopback port, HAProxy's files and side ports its own; shut down whatever
    happens. Where no HAProxy binary exists, Ray's Python proxy instead (the HAProxy tests skip)."""
    port, metrics_port = free_port(), free_port()
    head = _start_node(
        head=True,
        num_cpus=2,
        include_dashboard=False,
        dashboard_port=None,  # 8265 or the next free port, as ray.init: another cluster on this machine may hold 8265
        no_monitor=True,  # no autoscaler's monitor: this cluster has no autoscaler (ray.init starts one anyway)
        object_store_memory=200 << 20,
        metrics_export_port=metrics_port,  # Ray's Prometheus export of this node
        _system_config={
            "metrics_report_interval_ms": 2000,  # exported every 2 s (Ray's default: 10 s)
            "health_check_period_ms": 1000,  # a node whose raylet died is dead after 3 failed checks 1 s apart
            "health_check_failure_threshold": 3,  # (Ray's default: 5, 3 s apart)
            "prestart_worker_first_driver": False,  # no idle workers booted ahead: Serve's actors and the replicas, each
            "enable_worker_prestart": False,  # with a runtime env of its own, get workers of their own anyway
        },
        resources={SLOT: 1},  # one replica of the second-node test here, one on the second node
    )
    workdir = tempfile.mkdtemp(prefix="pdray-", dir="/tmp")  # short: HAProxy's socket path must fit 97 bytes
    try:
        ray.init(address=head.address, log_to_driver=False, configure_logging=False)
        env = ingress_env(INGRESS, workdir)
        # the ingress on this node only: a second node on this machine would start a second HAProxy on the same ports
        serve.start(
            http_options={"host": "127.0.0.1", "port": port},
            proxy_location="HeadOnly",
            controller_options={"runtime_env": {"env_vars": env}} if env else None,
        )
        endpoint = Endpoint(f"http://127.0.0.1:{port}")
        endpoint.ray_metrics = Endpoint(f"http://127.0.0.1:{metrics_port}")
        fallback = env.get("RAY_SERVE_FALLBACK_PROXY_HTTP_PORT")  # HAProxy's backup: Ray's Python proxy
        endpoint.ray_proxy = Endpoint(f"http://127.0.0.1:{fallback}") if fallback else endpoint
        yield endpoint
    finally:
        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            head.kill_all_processes(check_alive=False, allow_graceful=True, wait=True)  # what ray.shutdown does to its own
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the bundled digits model's repository (the shipped checkpoint exported with the leaky
    lowering, as conftest's `repo`; `make bundled`): this module serves it without an export (torch)."""
    from prelu_deploy.serve.repository.bundled import bundled_repository

    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(bundled_repository() / "digits", root / "digits")
    return root


def _deploy(repo, options: RayOptions, wait: bool = True) -> None:
    """The app with `options`, deployed as serve --ray does; `wait=False`: returned once Ray's controller has
    it, its replicas starting (serve.run would wait for them)."""
    if wait:
        deploy(repo, SETTINGS, options)
    else:
        serve.run_many([serve.RunTarget(build(repo, SETTINGS, options), name=APP_NAME)], wait_for_applications_running=False)
    deployed["options"] = options


@pytest.fixture
def proxy(cluster, repo):
    """The proxy in front of 2 replicas of the app (deployed again only where a test changed it)."""
    if deployed["options"] is not TWO or _running() != 2:
        _deploy(repo, TWO)
    _wait_for(lambda: _running() == 2, 60)
    return cluster


@pytest.fixture(scope="module")
def runner(repo):
    return get_runner("onnxruntime", repo / "digits", threads=1)


@pytest.fixture(scope="module")
def golden(runner):
    x = runner.entry.golden_io()["inputs"][:16]
    return x, runner.run(x)


def test_readiness_counts_the_ready_replicas(proxy):
    for path in ("/v2/health/ready", "/v2/models/digits/ready"):
        status, headers, body = proxy.request("GET", path)
        assert status == 200 and json.loads(body)["ready"] is True
        assert headers["x-ready-replicas"] == "2" and json.loads(body)["ready_replicas"] == 2
        assert headers["x-replica"]
    status, meta = proxy.json("GET", "/v2/models/digits")
    assert status == 200 and meta["parity_gate"]["passed"] and meta["ready"]
    assert proxy.json("GET", "/v2/health/live") == (200, {"live": True})


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_through_ray_equals_the_runner(proxy, golden, binary):
    x, expected = golden
    client = httpclient.InferenceServerClient(url=proxy.url[len("http://") :])
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    inp = httpclient.InferInput("images", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    result = client.infer("digits", [inp], outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary)])
    np.testing.assert_array_equal(result.as_numpy("logits"), expected)
    client.close()


def test_classify_the_sample_digits(proxy):
    for png in sorted(SAMPLES.glob("digit_*.png")):
        status, headers, body = proxy.request("POST", "/v1/classify", png.read_bytes(), {"content-type": "image/png"})
        assert status == 200, body
        assert json.loads(body)["predictions"][0]["top_k"][0]["label"] == png.stem.split("_")[1], png.name


class Load:
    """`concurrency` clients, each a thread with one keep-alive connection, sending JSON infer requests
    of golden rows until stopped; every answer is checked against the runner's. Timeouts bound a hang.
    `polite`: a client answered 503 waits what its Retry-After says, then asks again on a new connection,
    as a client that honours back-pressure does (else it asks again at once)."""

    def __init__(self, url: str, golden, concurrency: int, timeout_s: float = 10.0, polite: bool = False):
        self.host, self.port = url[len("http://") :].split(":")
        self.x, self.expected, self.timeout_s, self.polite = *golden, timeout_s, polite
        self.stop, self.lock = threading.Event(), threading.Lock()
        self.ok, self.wrong, self.failures, self.replicas, self.retry_after = 0, 0, [], set(), []
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(concurrency)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(self.timeout_s + 5)
        assert not any(t.is_alive() for t in self.threads), "a client hung past its timeout"

    @property
    def total(self) -> int:
        return self.ok + self.wrong + len(self.failures)

    def _client(self, i: int) -> None:
        conn, n = None, i
        while not self.stop.is_set():
            row = n % len(self.x)
            n += 1
            body = json.dumps(
                {"inputs": [{"name": "images", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": self.x[row].ravel().tolist()}]}
            )
            try:
                conn = conn or http.client.HTTPConnection(self.host, int(self.port), timeout=self.timeout_s)
                conn.request("POST", "/v2/models/digits/infer", body, {"content-type": "application/json"})
                resp = conn.getresponse()
                data, status = resp.read(), resp.status
            except (OSError, http.client.HTTPException) as err:  # a timeout is an OSError too
                with self.lock:
                    self.failures.append((type(err).__name__, str(err)))
                conn = conn.close() if conn else None
                continue
            with self.lock:
                self.replicas.add(resp.getheader("x-replica"))
                if status == 200:
                    y = np.asarray(json.loads(data)["outputs"][0]["data"], np.float32)
                    good = np.allclose(y, self.expected[row], rtol=1e-5, atol=1e-5)
                    self.ok, self.wrong = self.ok + good, self.wrong + (not good)
                else:
                    self.failures.append((status, data.decode(errors="replace")[:200]))
                    self.retry_after.append(resp.getheader("retry-after"))
            if self.polite and status == 503 and (wait := resp.getheader("retry-after")):
                self.stop.wait(float(wait))
                conn = conn.close()  # the next request on a new connection: the server may close an idle one meanwhile


def test_two_replicas_share_the_load(proxy, golden):
    with Load(proxy.url, golden, concurrency=8) as load:
        _wait_for(lambda: load.ok >= 200 and len(load.replicas) == 2, 60)  # Ray routes by queue length: give it time
    assert load.wrong == 0 and not load.failures, load.failures[:5]
    assert len(load.replicas) == 2, load.replicas
    seen: dict[str, float] = {}  # each replica's own /metrics: it counted infer requests of its own
    for _ in range(200):
        status, headers, body = proxy.request("GET", "/metrics")
        served = sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.decode().splitlines()
            if line.startswith("prelu_requests_total{") and 'endpoint="infer"' in line
        )
        seen[headers["x-replica"]] = served
        if len(seen) == 2:
            break
    assert len(seen) == 2 and all(n > 0 for n in seen.values()), seen


def _ray_counts(cluster) -> dict[str, float]:
    """Requests each replica of the app processed, as Ray's own Prometheus export of this node says."""
    counts: dict[str, float] = {}
    for line in cluster.ray_metrics.request("GET", "/metrics")[2].decode().splitlines():
        if (
            line.startswith("ray_serve_deployment_request_counter_total{")
            and f'application="{APP_NAME}"' in line
            and f'deployment="{DEPLOYMENT}"' in line
        ):
            replica = line.split('replica="', 1)[1].split('"', 1)[0]
            counts[replica] = counts.get(replica, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_rays_prometheus_export_counts_every_replica(proxy, golden):
    """The one place to scrape for the whole deployment: Ray's metrics export of each node (here one)
    counts every replica's requests, labelled by replica; the app's own /metrics is one replica's."""
    before = _ray_counts(proxy)
    with Load(proxy.url, golden, concurrency=8) as load:
        _wait_for(lambda: load.ok >= 300, 60)
    assert load.wrong == 0 and not load.failures, load.failures[:5]

    def counted() -> bool:
        after = _ray_counts(proxy)
        return sum(after.values()) - sum(before.values()) >= load.ok and all(
            after.get(r, 0) > before.get(r, 0) for r in _replica_ids()
        )

    _wait_for(counted, 60, step_s=0.5)  # Ray exports what replicas report every 2 s (the cluster's metrics_report_interval_ms)


def _answered_or_closed(failures) -> bool:
    """Each failed request got a 5xx answer with a body, or its connection closed at once (the replica died
    while answering it, after HAProxy could no longer send it elsewhere: before the answer's head, or inside
    its body — IncompleteRead) — never a client timeout (a hang)."""
    closed = ("RemoteDisconnected", "ConnectionResetError", "IncompleteRead")
    return all((isinstance(s, int) and s >= 500 and why) or s in closed for s, why in failures)


def _replica_ids() -> list[str]:
    """This app's live replicas, by id (Ray Serve names their actors after them)."""
    prefix = f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT}#"
    return [a["name"][len(prefix) :] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]


def _pid(replica_id: str) -> int:
    handle = ray.get_actor(f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT}#{replica_id}", namespace="serve")
    return ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=10)


def test_a_killed_replica_costs_at_most_1_percent_and_comes_back(proxy, golden):
    """SIGKILL of one replica's process at concurrency 8: no wrong answer, at most 1 % of requests fail,
    each at once (a 5xx answer, or a connection closed unanswered; no hang: clients time out at 10 s), and
    Ray has 2 ready replicas again within 30 s."""
    assert _running() == 2
    victim = _replica_ids()[0]
    pid = _pid(victim)
    with Load(proxy.url, golden, concurrency=8) as load:
        _wait_for(lambda: load.ok >= 100, 60)
        os.kill(pid, signal.SIGKILL)
        back_s = _wait_for(lambda: victim not in _replica_ids() and _running() == 2 and len(_replica_ids()) == 2, 30)
        _wait_for(lambda: load.total >= 1000, 90)  # enough requests for 1 % to mean something
    print(
        f"killed replica {victim} (pid {pid}): 2 ready replicas again after {back_s:.1f} s; "
        f"{len(load.failures)} of {load.total} requests failed: {load.failures[:2]}"
    )
    assert load.wrong == 0
    assert len(load.failures) <= 0.01 * load.total, (len(load.failures), load.total, load.failures[:5])
    assert _answered_or_closed(load.failures), load.failures[:5]  # each at once, never a hang


def test_autoscaling_from_1_to_2_and_back_with_503_retry_after_at_the_proxy(cluster, repo, golden):
    """Redeploys with MIN,MAX = 1,2 and short delays. One replica holds 2 requests and Ray's proxy
    queues 2 more, so 8 clients also meet Ray's back-pressure: a 503 with Retry-After, never a hang
    (the clients that scale it up honour Retry-After, as polite clients do: not a storm of 503s on the 2
    cores while the second replica starts)."""
    options = RayOptions(
        autoscale=(1, 2),
        cpus_per_replica=0.5,
        max_ongoing_requests=2,
        max_queued_requests=2,
        target_ongoing_requests=1,
        upscale_delay_s=0.5,
        downscale_delay_s=1,
        metrics_interval_s=0.5,
        look_back_period_s=1,
        health_check_period_s=1,
    )
    _deploy(repo, options)
    _wait_for(lambda: _running() == 1, 60)
    with Load(cluster.url, golden, concurrency=8, polite=True) as load:
        up_s = _wait_for(lambda: _running() == 2, 60)
        _wait_for(lambda: load.ok >= 200, 60)
    # Ray's proxy's router back-pressure, on its own: beside clients that reach the replicas straight through
    # HAProxy, the requests queued in Ray's router can wait for a free replica slot past any client's timeout
    with Load(cluster.ray_proxy.url, golden, concurrency=8) as through_rays_proxy:
        _wait_for(lambda: len(through_rays_proxy.failures) >= 10, 60)
    down_s = _wait_for(lambda: _running() == 1, 60)
    not_503 = [f for f in through_rays_proxy.failures if f[0] != 503]
    assert through_rays_proxy.wrong == 0 and not not_503, not_503[:5]
    assert set(through_rays_proxy.retry_after) == {"1"}
    assert all("num_queued_requests" in json.loads(why)["error"] for _, why in through_rays_proxy.failures)
    assert load.wrong == 0 and load.ok > 0
    others = [f for f in load.failures if f[0] != 503]  # in the message: what failed other than a 503
    assert load.failures and not others, (others[:5], len(load.failures))
    assert set(load.retry_after) == {"1"}
    # Ray answers these itself (the replica through HAProxy; Ray's proxy for a request HAProxy sent to its backup,
    # or with --ray-ingress proxy), in text: serve.ray.ingress makes them JSON, as the app's own errors
    assert all(json.loads(why)["error"].startswith("Request dropped due to backpressure") for _, why in load.failures)
    print(
        f"autoscaling: 1 → 2 replicas in {up_s:.1f} s under load, 2 → 1 in {down_s:.1f} s idle; "
        f"{len(load.failures)} answers 503 + Retry-After, e.g. {load.failures[0][1]!r}"
    )


@pytest.fixture(scope="module")
def side_apps(cluster, repo, tmp_path_factory):
    """Three applications beside the main one, deployed at once so that their replicas start side by side
    (each test below waits for its own, as serve.run does, and deletes it): `tampered`, `gated`, `built`."""
    from prelu_deploy.serve.ray.app import PreluDeploy, app_builder

    bad = serve.deployment(PreluDeploy, name="Tampered").options(max_constructor_retry_count=1, ray_actor_options={"num_cpus": 0})
    blob = {"ref": ray.put(b"not the repository"), "sha256": "0" * 64}  # this process owns it: held while the module runs
    changed = tmp_path_factory.mktemp("gated")
    shutil.copytree(repo / "digits", changed / "digits")
    onnx = changed / "digits" / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    apps = {
        "tampered": bad.bind(blob, SETTINGS.model_dump(mode="json", exclude={"repo"})),
        # one start: the two more that serve --ray allows a replica would fail alike
        "gated": build(changed, SETTINGS, RayOptions(cpus_per_replica=0.5, start_attempts=1)),
        "built": app_builder({"repo": str(repo), "threads": 1}),
    }
    serve.run_many(
        [serve.RunTarget(app, name=name, route_prefix=f"/{name}") for name, app in apps.items()],
        wait_for_applications_running=False,
    )
    yield _get_global_client()._wait_for_application_running  # serve.run's own wait: RuntimeError if DEPLOY_FAILED


def test_a_replica_refuses_a_blob_whose_sha256_differs(side_apps):
    """A real replica sent bytes that are not what their digest says: it refuses to start, with the reason."""
    try:
        with pytest.raises(RuntimeError, match="Deploying application tampered failed"):
            side_apps("tampered")
        assert "differs from the sender's" in serve.status().applications["tampered"].deployments["Tampered"].message
    finally:
        _delete("tampered")


def test_a_replica_whose_models_all_fail_the_gate_never_counts_as_ready(side_apps):
    """The gate runs in every replica before Ray's first health check: with the one model's ONNX file
    changed, no replica becomes ready and the deployment fails with the model's reason."""
    try:
        with pytest.raises(RuntimeError, match="Deploying application gated failed"):
            side_apps("gated")
        message = serve.status().applications["gated"].deployments[DEPLOYMENT].message
        assert "no model passed its parity gate" in message and "sha256" in message, message
    finally:
        _delete("gated")


def test_the_config_file_builder_serves_with_the_repository_inline(cluster, side_apps):
    """`import_path: prelu_deploy.serve.ray.app:app_builder` (Ray Serve config files, KubeRay): the bytes
    travel in the deployment's arguments; here beside the main app under its own route prefix."""
    try:
        side_apps("built")
        status, headers, body = cluster.request("GET", "/built/v2/models/digits/ready")
        assert status == 200 and json.loads(body)["ready"] is True, body
    finally:
        serve.delete("built", _blocking=False)  # its replica drains while the next test starts `serve run`


def test_the_documented_config_file_deploys_with_rays_serve_run(cluster):
    """docs/scale-out-serve.yaml, the file itself, deployed by Ray's own `serve run` onto this cluster
    (replacing the app of the same name): app_builder builds it, the replica passes its gate and
    answers through the ingress, with the config file's settings (1 CPU per replica)."""
    config = Path(__file__).resolve().parents[2] / "docs" / "scale-out-serve.yaml"
    deployed["options"] = None
    before = time.time()
    args = [
        str(Path(sys.executable).with_name("serve")),
        "run",
        str(config),
        "--non-blocking",
        "--address",
        ray.get_runtime_context().gcs_address,
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    def replaced() -> bool:  # the file's application runs, and no replica of the one it replaced is left
        app = _app_details()
        return app is not None and app["last_deployed_time_s"] >= before and app["status"] == "RUNNING"

    _wait_for(replaced, 120)
    assert _running() >= 1
    status, headers, body = cluster.request("GET", "/v2/models/digits/ready")
    assert status == 200 and json.loads(body)["ready"] is True, body
    png = SAMPLES / "digit_7.png"
    status, headers, body = cluster.request("POST", "/v1/classify", png.read_bytes(), {"content-type": "image/png"})
    assert status == 200 and json.loads(body)["predictions"][0]["top_k"][0]["label"] == "7", body
    deployment = serve.status().applications[APP_NAME].deployments[DEPLOYMENT]
    assert deployment.status == "HEALTHY", deployment
    assert ray.available_resources().get("CPU", 0) <= 1.0  # the file's num_cpus: 1 per replica


def test_the_cli_joins_a_running_cluster_and_leaves_it_as_it_was(cluster, repo):
    """`prelu-deploy serve --ray --ray-address ADDR` deploys onto this module's cluster (replacing the app
    of the same name), serves through its proxy, and on SIGTERM deletes its app and leaves the cluster up,
    within its bound (STOP_S, serve/ray/driver.py: it exits then whatever Ray does)."""
    exe = Path(sys.executable).with_name("prelu-deploy")
    args = [
        str(exe),
        "serve",
        str(repo),
        "--ray",
        "--ray-address",
        ray.get_runtime_context().gcs_address,
        "--replicas",
        "1",
        "--ray-cpus-per-replica",
        "0.5",
        "--ray-ingress",
        INGRESS,
        "--port",
        cluster.url.rsplit(":", 1)[1],
        "--log-level",
        "warning",
    ]
    deployed["options"] = None
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # the CLI says when it serves
    reader.start()
    try:
        _wait_for(lambda: proc.poll() is not None or any(line.startswith("serving") for line in lines), 90)
        assert proc.poll() is None, "".join(lines)
        status, headers, body = cluster.request("GET", "/v2/models/digits/ready")
        assert status == 200 and headers["x-ready-replicas"] == "1" and _running() == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            proc.wait(STOP_S + 10)  # past STOP_S its watchdog prints every thread's stack and exits 1
        finally:
            proc.kill()  # none left behind, whatever failed
            reader.join(10)
    stopped_s = time.monotonic() - signalled
    print(f"the CLI stopped {stopped_s:.1f} s after SIGTERM")
    assert proc.returncode == 0 and stopped_s < STOP_S, "".join(lines)
    assert APP_NAME not in serve.status().applications and ray.is_initialized()


class SecondNode:
    """A second Ray node on this machine joined to the module's cluster (_start_node: no `ray start` process
    of its own, importing Ray and watching the node's): 1 CPU, its own object store (100 MB) and temporary
    folder, its own dashboard agent's port (the default one is the first node's: its agent retried it for
    3.4 s before the node could join), and the custom resources {SLOT: 1, "node2": 1}. Stopped (every
    process of the node SIGKILLed: no drain) whatever happens."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="pdr2-", dir="/tmp")  # short: the plasma store's socket path lives in it
        self.node = _start_node(
            head=False,
            gcs_address=ray.get_runtime_context().gcs_address,
            num_cpus=1,
            resources={SLOT: 1, "node2": 1},
            object_store_memory=100 << 20,
            temp_dir=self.tmp,  # its logs there too
            dashboard_agent_listen_port=0,  # a free one
            min_worker_port=0,  # workers' ports: free ones, not the first node's range
            max_worker_port=0,
        )
        self.id = self.joined()

    def joined(self) -> str:
        """Its node id, once it joined the cluster (within 90 s, else it is stopped and the test fails)."""
        try:
            _wait_for(lambda: self.node_id() is not None, 90)
        except AssertionError:
            self.stop()
            raise
        return self.node_id()

    def node_id(self) -> str | None:
        return next((n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("node2")), None)

    def kill_raylet(self) -> int:
        """SIGKILL to its raylet, reaped at once (its parent is this process: unreaped, a zombie raylet
        passes its workers' liveness check of it, and they serve on); returns the raylet's pid."""
        from ray._private import ray_constants

        raylet = self.node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process
        raylet.send_signal(signal.SIGKILL)
        raylet.wait()
        return raylet.pid

    def stop(self) -> None:
        self.node.kill_all_processes(check_alive=False, allow_graceful=False, wait=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _replica_nodes() -> dict[str, str]:
    """Each replica of the app that Ray's controller holds RUNNING: the node it runs on, as the replica itself
    says. Only those are asked: a call to the actor of a replica lost with its node waited out its timeout."""
    app = _get_global_client().get_serve_details()["applications"].get(APP_NAME)
    replicas = app["deployments"][DEPLOYMENT]["replicas"] if app else []
    nodes = {}
    for replica in (r["replica_id"] for r in replicas if r["state"] == "RUNNING"):
        try:
            handle = ray.get_actor(f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT}#{replica}", namespace="serve")
            nodes[replica] = ray.get(handle.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()), timeout=10)
        except (ValueError, ray.exceptions.RayError):  # died meanwhile
            pass
    return nodes


def test_a_replica_on_a_second_node_gets_the_repository_through_the_object_store_and_outlives_its_raylet(cluster, repo, golden):
    """A second node with its own object store; replicas need one SLOT each, and each node offers one, so
    one replica runs there: it fetched the repository from the object store (the bytes `ray.put` on this
    node), passed its gate and answers through HAProxy. Its node's raylet SIGKILLed at 8 clients: no wrong
    answer, at most 1 % failed (each at once), the replica on this node serves on; once a node with a
    slot joins again, Ray places the replacement there and 2 replicas are ready again."""
    node = None
    try:
        # the replica on this node starts while the second node boots
        _deploy(repo, RayOptions(replicas=2, cpus_per_replica=0.5, resources={SLOT: 1}, health_check_period_s=1), wait=False)
        node = SecondNode()
        node2 = node.id
        _wait_for(lambda: _running() == 2, 120)
        placed = _replica_nodes()
        remote = next(r for r, n in placed.items() if n == node2)
        assert sorted(placed.values()) == sorted([node2, ray.get_runtime_context().get_node_id()]), placed
        with Load(cluster.url, golden, concurrency=8) as load:
            _wait_for(lambda: remote in load.replicas and load.ok >= 100, 60)  # it answers through the ingress
            raylet = node.kill_raylet()
            dead_s = _wait_for(lambda: node2 not in {n["NodeID"] for n in ray.nodes() if n["Alive"]}, 90)
            killed_at = load.total
            _wait_for(lambda: load.total >= killed_at + 500 and load.total >= 1000, 90)
        print(
            f"second node's raylet (pid {raylet}) killed: Ray saw the node dead after {dead_s:.1f} s; "
            f"{len(load.failures)} of {load.total} requests failed: {load.failures[:2]}"
        )
        assert load.wrong == 0
        assert len(load.failures) <= 0.01 * load.total, (len(load.failures), load.total, load.failures[:5])
        assert _answered_or_closed(load.failures), load.failures[:5]
        assert _running() == 1 and remote not in _replica_nodes()
        node.stop()
        node = SecondNode()  # a node with a free slot again: the replacement replica goes there
        back_s = _wait_for(lambda: _running() == 2, 120)
        assert node.node_id() in _replica_nodes().values()
        print(f"a new second node: 2 ready replicas again after {back_s:.1f} s")
    finally:
        try:
            _delete(APP_NAME)  # first: a replica on the node would otherwise be replaced when the node goes
            deployed["options"] = None
        finally:
            if node is not None:
                node.stop()

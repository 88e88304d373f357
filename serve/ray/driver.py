"""`prelu-deploy serve --ray`, the process: join (or start) a Ray cluster, start Serve with the chosen
ingress, deploy the application (serve/ray/app.py) and serve until SIGTERM or Ctrl-C; then stop within
STOP_S whatever Ray does: the application deleted from a cluster it joined (which stays up), or the
cluster it started stopped."""

import faulthandler
import logging
import os
import shutil
import signal
import tempfile
import time

import ray
from ray import serve
from ray.serve._private.application_state import StatusOverview
from ray.serve.context import _get_global_client
from ray.serve.generated.serve_pb2 import StatusOverview as StatusOverviewProto
from ray.serve.schema import ApplicationStatus

from prelu_deploy.errors import PreluDeployError, UsageError
from prelu_deploy.serve.ray.app import APP_NAME, GRACE_S, deploy
from prelu_deploy.serve.ray.options import RayOptions, haproxy_binary, ingress_env
from prelu_deploy.serve.settings import Settings

log = logging.getLogger("prelu_deploy.serve")
# SIGTERM or Ctrl-C → exit, at the latest: the application's deletion is waited for DELETE_WAIT_S (its
# replicas finish their requests within GRACE_S, or Ray kills them); past STOP_S a watchdog thread that
# needs no Python (faulthandler's) prints every thread's stack and exits 1
DELETE_WAIT_S = GRACE_S + 5.0
STOP_S = DELETE_WAIT_S + 15.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def running_ingress() -> str | None:
    """The ingress of the Serve instance running on the connected cluster (its controller decided it
    when it started: `ingress_env`): a Ray without these switches (before 2.60) has only its proxy;
    None when the controller does not answer."""
    controller = _get_global_client()._controller
    try:
        haproxy, direct = ray.get(
            controller.__ray_call__.remote(
                lambda self: (getattr(self, "_ha_proxy_enabled", False), getattr(self, "_direct_ingress_enabled", False))
            ),
            timeout=30,
        )
    except ray.exceptions.RayError:
        return None
    return "haproxy" if haproxy else "direct" if direct else "proxy"


def replica_addresses(name: str = APP_NAME) -> list[str]:
    """host:port of each running replica's own HTTP server (direct ingress and HAProxy modes)."""
    controller = _get_global_client()._controller
    groups = ray.get(controller.get_target_groups.remote(name, True), timeout=30)
    return sorted({f"{t.ip}:{t.port}" for g in groups if g.protocol == "HTTP" and g.app_name == name for t in g.targets})


def delete_app(name: str, wait_s: float) -> bool:
    """Ask the connected cluster's Serve controller to delete application `name`, then wait up to `wait_s`
    for it to be gone; False if it was not. The controller carries the deletion through either way (its
    replicas drain, then stop): unlike serve.delete, no call here waits on Ray without a deadline."""
    serve.delete(name, _blocking=False)
    controller = _get_global_client()._controller
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            status = StatusOverview.from_proto(
                StatusOverviewProto.FromString(ray.get(controller.get_serve_status.remote(name), timeout=min(left, 5.0)))
            )
        except ray.exceptions.GetTimeoutError:
            continue
        if status.app_status.status == ApplicationStatus.NOT_STARTED:  # what the controller says of an app it does not hold
            return True
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    return False


def serve_on_ray(
    repo, settings: Settings, options: RayOptions, host: str, port: int, address: str | None, log_level: str = "info"
) -> None:
    """`prelu-deploy serve --ray`: join (or start) a Ray cluster, start Serve with `options.ingress`,
    deploy, serve until SIGTERM or Ctrl-C; then delete the application (and stop the cluster when it was ours)."""

    def stop(signum, frame):
        raise KeyboardInterrupt  # SIGTERM (an orchestrator) and SIGINT (even where a shell ignored it) alike

    if options.ingress == "haproxy" and haproxy_binary() is None:
        raise UsageError(
            "--ray-ingress haproxy: no HAProxy for Ray Serve here (ray[serve] >= 2.60 brings one on Linux; or "
            "`apt-get install haproxy`, or RAY_SERVE_HAPROXY_BINARY_PATH); choose --ray-ingress proxy or direct"
        )
    for sig in SIGNALS:
        signal.signal(sig, stop)
    # HAProxy's files, for a cluster of ours; short: its admin socket's path (Ray adds a 57-character folder) must fit 97 bytes
    workdir = None if address else tempfile.mkdtemp(prefix="pdray-", dir="/tmp" if os.path.isdir("/tmp") else None)
    try:
        # A cluster we start: no dashboard, and no idle worker per CPU booted ahead for tasks (each costs a second
        # of CPU and ~80 MB): Serve's actors and the replicas all have a runtime env, so none would take one
        local = {} if address else {"include_dashboard": False, "_system_config": {"prestart_worker_first_driver": False}}
        try:
            ray.init(address=address, log_to_driver=log_level in ("info", "debug"), **local)
        except ConnectionError as err:
            raise UsageError(f"--ray-address {address}: no Ray cluster to join there ({err})") from None
        for sig in SIGNALS:
            signal.signal(sig, stop)  # again: ray.init sets its own
        env = ingress_env(options.ingress, workdir)  # applied by a controller this process starts, not by one running
        serve.start(
            http_options={"host": host, "port": port}, controller_options={"runtime_env": {"env_vars": env}} if env else None
        )
        ingress = running_ingress() or options.ingress
        if ingress != options.ingress:
            log.warning(
                "Serve already runs on this cluster with the %s ingress, not %s: its controller chose it when it "
                "started (docs/scale-out.md)",
                ingress,
                options.ingress,
            )
        try:
            deploy(repo, settings, options, log_level=log_level)
        except RuntimeError as err:  # DEPLOY_FAILED: the replicas' own reasons are in the status
            app = serve.status().applications.get(APP_NAME)
            why = "; ".join(d.message for d in app.deployments.values() if d.message) if app else ""
            raise PreluDeployError(f"the Ray Serve application did not start: {why or err}") from None
        where = f"http://{host}:{port}"
        if ingress == "direct":
            where = ", ".join(f"http://{a}" for a in replica_addresses()) + f" (each replica; Ray's proxy on {where})"
        print(f"serving {repo} on Ray at {where} through {ingress} (Ctrl-C to stop)", flush=True)
        while True:  # short sleeps: a signal that another thread took reaches `stop` at this thread's next bytecode
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the shutdown short: it is bounded
        faulthandler.dump_traceback_later(STOP_S, exit=True)
        try:
            _stop(address)
        finally:
            faulthandler.cancel_dump_traceback_later()
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)


def _stop(address: str | None) -> None:
    if not ray.is_initialized():
        return
    print("stopping: the Ray Serve application" + ("" if address else ", then the local Ray cluster"), flush=True)
    try:
        if not address:
            serve.shutdown()  # its controller's graceful shutdown, waited for at most 30 s (Ray's)
        elif not delete_app(APP_NAME, DELETE_WAIT_S):
            log.warning("the cluster's Serve controller still deletes the application after %.0f s: left to it", DELETE_WAIT_S)
    finally:
        ray.shutdown()

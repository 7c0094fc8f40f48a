"""tfhost on Ray Serve: a real local cluster, two replicas, real HTTP clients.

Ray must reach nothing but loopback here, and its settings alone do not ensure it. So
``test_the_cluster_in_a_loopback_only_namespace`` runs the cluster tests
(``tests/ray_cluster.py``, which nothing else collects) inside a new network (and PID)
namespace whose only interface is ``lo`` (``tfhost.ray.loopback``); if the namespace cannot
be made it fails, it never starts Ray on the host's network. There they run against one
``tfhost serve REPO --ray --replicas 2``; after each of them no socket may be bound or
connected off loopback. Here run the tests that need no cluster.

Every answer is compared with the expected values and, byte for byte, with what
``tfhost serve``'s own app answers for the same repository and options (run here, in this
process).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tfhost.ray import loopback

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = Path(__file__).with_name("ray_cluster.py")  # the tests run in the namespace

# -- outside: the namespace, and what needs no cluster -------------------------------------


def test_the_cluster_in_a_loopback_only_namespace() -> None:
    """Runs this module's cluster tests in a namespace whose only interface is lo."""
    env = loopback.namespace_env()
    env.pop("RAY_ADDRESS", None)  # a local cluster, never one elsewhere
    command = loopback.in_namespace(
        [sys.executable, "-m", "pytest", str(CLUSTER), "-q", "-p", "no:cacheprovider", "-rfE"]
    )
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540
        )
    except subprocess.TimeoutExpired as exc:  # --kill-child: the namespace dies with it
        raise AssertionError(f"the namespaced run took over 540 s:\n{exc.stdout}") from None
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"in the namespace (exit {done.returncode}):\n{output[-12000:]}"
    assert " passed" in done.stdout and " skipped" not in done.stdout, output[-4000:]


def test_model_name_reads_the_path_as_the_routes_do() -> None:
    from tfhost.serve.rest import model_name

    assert model_name("POST", "/v1/models/ranker:predict") == "ranker"
    assert model_name("POST", "/V1/MODELS/ranker/versions/3:classify") == "ranker"
    assert model_name("POST", "/v1/models/ranker/labels/stable:regress") == "ranker"
    assert model_name("GET", "/v1/models/ranker/versions/3/metadata") == "ranker"
    assert model_name("GET", "/v1/models/ranker") == "ranker"
    assert model_name("GET", "/v1/models") is None  # "Missing model name": any replica
    assert model_name("POST", "/v1/models/ranker") is None  # malformed: any replica says so
    assert model_name("POST", "/v2/models/ranker/infer") == "ranker"
    assert model_name("POST", "/v2/models/ranker/versions/2/infer") == "ranker"
    assert model_name("GET", "/v2/models/ranker/ready") == "ranker"
    assert model_name("GET", "/v2/models/stats/ready") == "stats"
    assert model_name("GET", "/v2/models/stats") is None  # every model's statistics
    assert model_name("POST", "/v2/repository/models/ranker/load") == "ranker"
    for path in ("/v2", "/v2/health/ready", "/metrics", "/", "/v2/repository/index"):
        assert model_name("GET", path) is None


@dataclass
class FakeReplica:
    """A replica as the router sees it (the fields of Ray's RunningReplica it reads)."""

    name: str
    multiplexed_model_ids: set[str] = field(default_factory=set)
    routing_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def replica_id(self) -> str:
        return self.name


def test_rank_prefers_holders_then_free_bytes_not_model_counts() -> None:
    from tfhost.ray.router import rank

    full = FakeReplica("full", {"big"}, {"free_bytes": 10})  # one model, little room
    roomy = FakeReplica("roomy", {"a", "b", "c"}, {"free_bytes": 900})  # three, much room
    fresh = FakeReplica("fresh")  # no report yet: holds nothing, room unknown
    unbudgeted = FakeReplica("unbudgeted", {"a"}, {"free_bytes": None})
    names = lambda ranks: [[r.name for r in group] for group in ranks]  # noqa: E731
    assert names(rank([full, roomy], "a")) == [["roomy"], ["full"]]
    assert names(rank([full, roomy], "new")) == [["roomy"], ["full"]]  # bytes, not counts
    assert names(rank([full, roomy, fresh], "new")) == [["fresh"], ["roomy"], ["full"]]
    assert names(rank([roomy, unbudgeted], "x")) == [["unbudgeted"], ["roomy"]]
    # Equal room: a rank each, in an order that depends on the model, not on the order
    # Ray lists them in, so a model nobody holds yet goes to one replica every time.
    twin = FakeReplica("twin")
    ranked = names(rank([fresh, twin], "x"))
    assert sorted(ranked) == [["fresh"], ["twin"]]
    assert names(rank([twin, fresh], "x")) == ranked
    assert {tuple(map(tuple, names(rank([fresh, twin], m)))) for m in "abcdefgh"} == {
        (("fresh",), ("twin",)),
        (("twin",), ("fresh",)),
    }
    assert len(rank([full, roomy, fresh], "")) == 1 and len(rank([full, roomy], "")[0]) == 2


def test_a_model_no_replica_reports_goes_where_the_router_sent_it() -> None:
    """Until Ray hears that a replica holds it, a model goes back where it was sent, even
    when that replica's next report shows less room than the other's."""
    from tfhost.ray.router import Placements, rank

    loading = FakeReplica("loading", routing_stats={"free_bytes": 100})  # counts the load
    other = FakeReplica("other", routing_stats={"free_bytes": 900})
    names = lambda ranks: [[r.name for r in group] for group in ranks]  # noqa: E731
    assert names(rank([other, loading], "m")) == [["other"], ["loading"]]
    assert names(rank([other, loading], "m", placed="loading")) == [["loading"], ["other"]]
    assert names(rank([other, loading], "m", placed="gone")) == [["other"], ["loading"]]
    other.multiplexed_model_ids.add("m")  # a holder beats where it was sent
    assert names(rank([other, loading], "m", placed="loading")) == [["other"], ["loading"]]

    placements = Placements(hold_s=0.4)
    assert placements.where("m") is None
    placements.sent("m", "loading")
    time.sleep(0.25)
    placements.sent("m", "loading")  # again: it keeps the first send's time
    assert placements.where("m") == "loading" and placements.where("n") is None
    time.sleep(0.25)
    assert placements.where("m") is None  # too long unreported: the load failed, say
    placements.sent("m", "other")
    placements.forget("m")
    assert placements.where("m") is None
    # Made-up names (any request path names one) do not pile up past their time.
    for n in range(3000):
        placements.sent(f"made-up-{n}", "other")
        if n == 1500:
            time.sleep(0.45)
    assert 1024 <= len(placements._sent) < 1600


def test_the_serve_run_config_and_the_builder(tmp_path: Path) -> None:
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from tfhost.errors import InputError
    from tfhost.ray import app

    config = yaml.safe_load((ROOT / "deploy" / "ray" / "tfhost.yaml").read_text())
    schema = ServeDeploySchema.parse_obj(config)
    (application,) = schema.applications
    assert application.import_path == "tfhost.ray:app"
    assert application.route_prefix == "/"
    built = app({**application.args, "repository": str(tmp_path)})
    assert type(built).__name__ == "Application"
    with pytest.raises(InputError, match=r"does not take \['memory_limit'\]"):
        app({"repository": str(tmp_path), "memory_limit": "1GiB"})
    with pytest.raises(InputError, match="replicas must be a int"):
        app({"repository": str(tmp_path), "replicas": "two"})
    with pytest.raises(InputError, match="--replicas must be at least 1"):
        app({"repository": str(tmp_path), "replicas": 0})


def test_the_kserve_serving_runtime_runs_tfhost_serve() -> None:
    import yaml

    documents = list(
        yaml.safe_load_all((ROOT / "deploy" / "kserve" / "servingruntime.yaml").read_text())
    )
    (runtime,) = [d for d in documents if d["kind"] == "ServingRuntime"]
    spec = runtime["spec"]
    assert set(spec["protocolVersions"]) == {"v1", "v2", "grpc-v2"}
    (container,) = spec["containers"]
    assert container["command"] == ["tfhost", "serve"]
    args = container["args"]
    assert "--rest_api_port=8080" in args and "--port=8081" in args and "--host=0.0.0.0" in args
    assert {p["containerPort"] for p in container["ports"]} == {8080}
    # tfhost serve takes every one of those arguments (TF Serving's spellings included).
    import typer

    from tfhost.cli import app as cli
    from tfhost.serve.flags import translate

    command = typer.main.get_command(cli).commands["serve"]  # type: ignore[attr-defined]
    given = translate([a.replace("{{.Name}}", "ranker") for a in args])
    params = command.make_context("serve", given).params
    assert (params["rest_port"], params["grpc_port"], params["host"]) == (8080, 8081, "0.0.0.0")
    assert params["model_name"] == "ranker" and params["memory_budget"] == "3GiB"


def test_replicas_without_ray_is_refused(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tfhost.cli", "serve", str(tmp_path), "--replicas", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--replicas is for --ray" in done.stderr


def test_import_tfhost_ray_does_not_import_ray() -> None:
    code = "import sys, tfhost, tfhost.ray, tfhost.ray.loopback; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

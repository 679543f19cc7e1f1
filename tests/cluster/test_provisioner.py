"""The node provisioner: catalogue validation, the trial estimate, and the placement policy (cheapest type
that fits, spot vs on-demand, GPU packing, clear errors), plus one calibration check on a real F1 trial."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cluster.data_stats import DataStats, EdgeStats
from cluster.instance_catalogue import DEFAULT_CATALOGUE, CatalogueError, load_catalogue
from cluster.placement import GPU_RESOURCE, Placement
from cluster.provisioner import NodeProvisioner, ProvisioningError
from cluster.trial_estimate import STARTUP_MINUTES, estimate_trial, training_step_seconds

REPO = Path(__file__).resolve().parents[2]

SMALL = {"family": "gnn", "conv": "sage", "channels": 32, "layers": 2, "aggr": "sum", "epochs": 2,
         "batch_size": 256, "fanouts": [8, 4], "max_steps_per_epoch": 200}  # fmt: skip
MEDIUM = {
    **SMALL,
    "channels": 128,
    "batch_size": 512,
    "fanouts": [16, 8],
    "epochs": 10,
    "max_steps_per_epoch": 2000,
}
BIG = {**SMALL, "conv": "gatv2", "channels": 512, "batch_size": 8192, "fanouts": [64, 32], "epochs": 3}


def shop(users: int = 100_000, orders_per_user: int = 20, train_rows: int = 50_000) -> DataStats:
    """A hand-made graph: users <- orders -> items, both foreign keys with their reverse edges."""
    orders, items = users * orders_per_user, 10_000
    edges = (
        EdgeStats("orders", "user_id", "users", orders, orders_per_user, 50 * orders_per_user),
        EdgeStats("users", "rev_user_id", "orders", orders, 1.0, 1),
        EdgeStats("orders", "item_id", "items", orders, orders / items, 100 * orders / items),
        EdgeStats("items", "rev_item_id", "orders", orders, 1.0, 1),
    )
    return DataStats(
        node_counts={"users": users, "orders": orders, "items": items},
        edges=edges,
        feature_bytes={"users": 64, "orders": 48, "items": 1024},
        train_rows=train_rows,
        eval_rows=train_rows // 5,
        seed_type="users",
        input_widths={"users": 12, "orders": 10, "items": 256},
        vocab_sizes={"users": 300, "orders": 40, "items": 2000},
        columns={"users": 6, "orders": 5, "items": 4},
    )


def write_catalogue(path: Path, instances: dict) -> Path:
    path.write_text(yaml.safe_dump({"instances": instances}))
    return path


def single_type_cost(name: str, params: dict, stats: DataStats, tmp_path: Path, **options) -> float:
    """The trial's cost on one catalogue type alone (inf when it does not fit): the brute-force reference."""
    entry = yaml.safe_load(DEFAULT_CATALOGUE.read_text())["instances"][name]
    path = write_catalogue(tmp_path / f"only-{name}.yaml", {name: entry})
    try:
        return NodeProvisioner(catalogue=str(path), **options).place(params, stats).estimate["trial_cost"]
    except ProvisioningError:
        return math.inf


# -- catalogue -------------------------------------------------------------------------------------------------
def test_shipped_catalogue_loads_with_the_documented_types():
    catalogue = load_catalogue()
    for name in ("g5.xlarge", "g5.2xlarge", "g5.12xlarge", "g5.48xlarge", "g6.xlarge", "g6.2xlarge",
                 "g6.12xlarge", "g6e.xlarge", "g6e.12xlarge", "p4d.24xlarge", "p5.48xlarge", "c7i.xlarge",
                 "c7i.4xlarge", "m7i.2xlarge", "r7i.4xlarge"):  # fmt: skip
        assert name in catalogue, name
        assert catalogue[name].node_labels["node.kubernetes.io/instance-type"] == name
    g5 = catalogue["g5.xlarge"]
    assert (g5.gpus, g5.gpu_model, g5.gpu_memory_gib, g5.gpu_speed) == (1, "A10G", 24, 1.0)
    assert catalogue["p5.48xlarge"].gpu_speed > catalogue["p4d.24xlarge"].gpu_speed > g5.gpu_speed
    assert catalogue["c7i.xlarge"].gpus == 0
    for instance in catalogue.values():
        assert 0 < (instance.spot_per_hour or 0) < instance.on_demand_per_hour


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ({"memory_gib": 16, "on_demand_per_hour": 1.0}, "vcpu", "missing"),
        ({"vcpu": "four", "memory_gib": 16, "on_demand_per_hour": 1.0}, "vcpu", "non-negative integer"),
        ({"vcpu": 4, "memory_gb": 16, "on_demand_per_hour": 1.0}, "memory_gb", "unknown field"),
        (
            {
                "vcpu": 4,
                "memory_gib": 16,
                "on_demand_per_hour": 1.0,
                "gpus": 1,
                "gpu_model": "A10G",
                "gpu_speed": 1.0,
            },
            "gpu_memory_gib",
            "GPU type",
        ),
        ({"vcpu": 4, "memory_gib": 16, "on_demand_per_hour": -1}, "on_demand_per_hour", "non-negative"),
    ],
)
def test_bad_catalogue_names_file_entry_and_field(tmp_path: Path, entry: dict, field: str, words: str):
    path = write_catalogue(tmp_path / "mine.yaml", {"g5.good": {"vcpu": 4, "memory_gib": 16,
                                                               "on_demand_per_hour": 1}, "x.bad": entry})  # fmt: skip
    with pytest.raises(CatalogueError) as error:
        load_catalogue(path)
    message = str(error.value)
    assert str(path) in message and "'x.bad'" in message and repr(field) in message and words in message
    assert "g5.good" not in message


def test_missing_or_shapeless_catalogue_says_what_to_do(tmp_path: Path):
    with pytest.raises(CatalogueError, match=r"does not exist.*catalogue="):
        load_catalogue(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- g5.xlarge\n")
    with pytest.raises(CatalogueError, match=r"list\.yaml.*top-level 'instances:'"):
        load_catalogue(tmp_path / "list.yaml")


def test_user_catalogue_replaces_the_default(tmp_path: Path):
    path = write_catalogue(tmp_path / "gke.yaml", {"a2-highgpu-1g": {
        "gpus": 1, "gpu_model": "A100", "gpu_memory_gib": 40, "gpu_speed": 3.0, "vcpu": 12, "memory_gib": 85,
        "on_demand_per_hour": 3.67, "node_labels": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
    }})  # fmt: skip
    provisioner = NodeProvisioner(catalogue=str(path))
    assert list(provisioner.instances()) == ["a2-highgpu-1g"]
    placement = provisioner.place(SMALL, shop())
    assert placement.instance_type == "a2-highgpu-1g"
    assert placement.node_selector["cloud.google.com/gke-accelerator"] == "nvidia-tesla-a100"
    assert placement.capacity == "on-demand"  # no spot price listed


# -- the estimate ----------------------------------------------------------------------------------------------
def test_estimate_counts_the_sampled_subgraph_and_stays_sane():
    stats = shop()
    estimate = estimate_trial(SMALL, stats)
    # one user: up to min(8, 1.25 x 20) orders, each order 1 item + the user again (no new node): ~17 nodes
    assert 256 * 10 < estimate.nodes_per_batch < 256 * 30
    assert 1.0 <= estimate.host_memory_gib < 4
    assert 0.6 <= estimate.gpu_memory_gib < 2
    assert estimate.steps == 2 * min(200, math.ceil(50_000 / 256))
    assert estimate.cpu_core_minutes > estimate.gpu_minutes > 0
    with pytest.raises(ValueError, match="unknown conv"):
        estimate_trial({**SMALL, "conv": "transformer"}, stats)
    with pytest.raises(ValueError, match="unknown model family"):
        estimate_trial({**SMALL, "family": "xgboost"}, stats)


def test_a_faster_gpu_does_not_shorten_a_dispatch_bound_trial():
    """Measured on an H200: small GNN steps wait on the host launching ~600 kernels, not on the device, so
    the wall time has a floor that neither GPU speed nor vCPUs move; attention convs launch more per module."""
    stats = shop()
    small = estimate_trial({**SMALL, "channels": 16, "batch_size": 64}, stats)
    assert small.gpu_dispatch_minutes > small.gpu_minutes  # dispatch-bound
    fastest = small.gpu_wall_minutes(100.0, vcpus=32)
    assert fastest >= STARTUP_MINUTES + small.gpu_dispatch_minutes
    assert small.gpu_wall_minutes(6.0, vcpus=32) == pytest.approx(fastest)
    assert small.gpu_utilisation(100.0, vcpus=32) < 0.05
    hgt = estimate_trial({**SMALL, "channels": 16, "batch_size": 64, "conv": "hgt"}, stats)
    assert hgt.gpu_dispatch_minutes > 4 * small.gpu_dispatch_minutes
    step = training_step_seconds(SMALL, stats)
    assert step["dispatch"] > 0 and step["cpu"] > step["host"] > 0


@given(
    batch=st.integers(1, 4096),
    fanouts=st.lists(st.integers(1, 64), min_size=1, max_size=3),
    channels=st.integers(1, 512),
    conv=st.sampled_from(["sage", "gin", "gatv2", "hgt"]),
    grow=st.sampled_from(["batch_size", "fanouts", "channels"]),
    factor=st.integers(2, 4),
)
def test_estimate_grows_with_batch_fanouts_and_channels(batch, fanouts, channels, conv, grow, factor):
    stats = shop(users=20_000)
    params = {**SMALL, "conv": conv, "batch_size": batch, "fanouts": fanouts, "channels": channels}
    if grow == "fanouts":
        bigger = {**params, "fanouts": [k * factor for k in fanouts]}
    else:
        bigger = {**params, grow: params[grow] * factor}
    small, large = estimate_trial(params, stats), estimate_trial(bigger, stats)
    for name in ("host_memory_gib", "host_memory_gpu_gib", "gpu_memory_gib", "nodes_per_batch"):
        assert getattr(large, name) >= getattr(small, name) * (1 - 1e-12), name
    if grow == "batch_size":
        assert large.nodes_per_batch > small.nodes_per_batch
    if grow == "channels":
        assert large.parameters > small.parameters and large.gpu_memory_gib > small.gpu_memory_gib
    if grow != "batch_size":  # a bigger batch also means fewer steps per epoch
        assert large.cpu_core_minutes >= small.cpu_core_minutes * (1 - 1e-12)


# -- the policy ------------------------------------------------------------------------------------------------
def test_small_trial_lands_on_a_cheap_type_with_reasons():
    placement = NodeProvisioner().place(SMALL, shop())
    catalogue = load_catalogue()
    assert placement.instance_type in catalogue
    assert placement.hourly_cost < 0.5
    assert placement.estimate["trial_cost"] < 0.05
    assert {"host_memory_gib", "gpu_memory_gib", "cpu_core_minutes", "minutes"} <= set(placement.estimate)
    text = " ".join(placement.reasons)
    assert "Estimate for sage" in text and "Cheapest" in text and placement.instance_type in text
    assert Placement.from_dict(placement.to_dict()) == placement


@pytest.mark.parametrize(
    "params", [SMALL, MEDIUM, BIG, {"family": "gbdt", "gbdt_trees": 500, "gbdt_leaves": 63}]
)
def test_the_cheapest_fitting_type_is_chosen(tmp_path: Path, params: dict):
    stats = shop()
    placement = NodeProvisioner().place(params, stats)
    costs = {name: single_type_cost(name, params, stats, tmp_path) for name in load_catalogue()}
    cheapest = min(costs.values())
    assert math.isfinite(cheapest)
    assert placement.estimate["trial_cost"] == pytest.approx(cheapest)
    assert costs[placement.instance_type] == pytest.approx(cheapest)
    # and it does fit: its share holds the estimate with the headroom
    instance, grow = load_catalogue()[placement.instance_type], 1.25
    if placement.gpus:
        assert (
            placement.estimate["gpu_memory_gib"] * grow <= instance.gpu_memory_gib / placement.trials_per_gpu
        )
        assert placement.estimate["host_memory_gpu_gib"] * grow <= placement.memory_gib
    else:
        assert placement.estimate["host_memory_gib"] * grow <= placement.memory_gib


def test_gbdt_goes_to_cpu_and_gpu_can_be_switched_off():
    gbdt = NodeProvisioner().place({"family": "gbdt", "gbdt_trees": 300}, shop())
    assert gbdt.gpus == 0 and gbdt.tolerations == [] and GPU_RESOURCE not in gbdt.resources()["limits"]
    cpu_only = NodeProvisioner(allow_gpu=False).place(SMALL, shop())
    assert load_catalogue()[cpu_only.instance_type].gpus == 0 and cpu_only.gpus == 0


def test_bigger_trial_moves_to_a_bigger_gpu():
    provisioner, stats = NodeProvisioner(), shop()
    small, big = provisioner.place(SMALL, stats), provisioner.place(BIG, stats)
    catalogue = load_catalogue()
    assert estimate_trial(BIG, stats).gpu_memory_gib * 1.25 > 24  # more than an A10G or L4 holds
    assert big.gpus == 1 and catalogue[big.instance_type].gpu_memory_gib >= 40
    assert catalogue[big.instance_type].gpu_memory_gib > catalogue[small.instance_type].gpu_memory_gib
    assert big.trials_per_gpu == 1
    assert big.tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert big.node_selector["node.kubernetes.io/instance-type"] == big.instance_type
    assert big.node_selector["karpenter.sh/capacity-type"] == big.capacity


def test_short_trials_go_to_spot_and_long_ones_on_demand():
    short = NodeProvisioner().place(SMALL, shop())
    assert short.estimate["minutes"] < 60 and short.capacity == "spot"
    assert short.node_selector["karpenter.sh/capacity-type"] == "spot"
    assert any(reason.startswith("Spot:") for reason in short.reasons)
    long_params = {**SMALL, "channels": 256, "fanouts": [32, 16], "batch_size": 512, "epochs": 100,
                   "max_steps_per_epoch": 5000}  # fmt: skip
    long = NodeProvisioner().place(long_params, shop(users=1_000_000, train_rows=1_000_000))
    assert long.estimate["minutes"] >= 60 and long.capacity == "on-demand"
    assert long.node_selector["karpenter.sh/capacity-type"] == "on-demand"
    assert any(reason.startswith("On-demand:") for reason in long.reasons)
    never_spot = NodeProvisioner(spot_max_minutes=0).place(SMALL, shop())
    assert never_spot.capacity == "on-demand"
    assert never_spot.estimate["trial_cost"] > short.estimate["trial_cost"]


def test_small_gpu_trials_are_packed_and_big_ones_are_not():
    stats = shop()
    packed = NodeProvisioner().place(MEDIUM, stats)
    alone = NodeProvisioner(max_trials_per_gpu=1).place(MEDIUM, stats)
    assert packed.gpus == 1 and packed.trials_per_gpu > 1
    assert packed.node_selector["nvidia.com/gpu.replicas"] == str(packed.trials_per_gpu)
    assert packed.estimate["trial_cost"] < alone.estimate["trial_cost"]
    assert alone.trials_per_gpu == 1 and "nvidia.com/gpu.replicas" not in alone.node_selector
    assert any("trials per GPU" in reason for reason in packed.reasons)
    # the packed trials' GPU memory still fits, with headroom, in their share of the GPU
    gpu_memory = load_catalogue()[packed.instance_type].gpu_memory_gib
    assert packed.estimate["gpu_memory_gib"] * 1.25 * packed.trials_per_gpu <= gpu_memory
    big = NodeProvisioner().place(BIG, stats)
    assert big.trials_per_gpu == 1 and "nvidia.com/gpu.replicas" not in big.node_selector


def test_resources_ask_for_the_placements_gpus():
    for params in (SMALL, MEDIUM, BIG, {"family": "gbdt"}):
        placement = NodeProvisioner().place(params, shop())
        resources = placement.resources()
        assert resources["limits"] == resources["requests"]
        assert resources["limits"].get(GPU_RESOURCE, "0") == str(placement.gpus)
        assert float(resources["limits"]["cpu"]) == placement.cpu > 0
        assert placement.cpu <= load_catalogue()[placement.instance_type].vcpu


def test_a_trial_no_type_holds_raises_a_clear_error():
    huge = {**BIG, "channels": 4096, "batch_size": 65_536, "fanouts": [256, 256, 64]}
    with pytest.raises(ProvisioningError) as error:
        NodeProvisioner().place(huge, shop(users=2_000_000))
    message = str(error.value)
    assert "GiB of GPU memory" in message and "GiB of host memory" in message
    assert "p5.48xlarge" in message  # the largest type (GPU memory and RAM)
    assert "batch_size" in message and "catalogue" in message


def test_place_local_checks_this_machines_memory():
    placement = NodeProvisioner().place_local(SMALL, shop(), cpu_count=2, memory_gib=24)
    assert (placement.instance_type, placement.gpus, placement.cpu) == ("local", 0, 2.0)
    assert placement.memory_gib <= 24 and placement.estimate["minutes"] > 0
    with pytest.raises(
        ProvisioningError, match=r"needs about .* GiB .* this machine offers 1.0 GiB: lower batch_size"
    ):
        NodeProvisioner().place_local(BIG, shop(), cpu_count=2, memory_gib=1.0)
    gbdt = {"family": "gbdt", "gbdt_trees": 400, "gbdt_leaves": 63}
    with pytest.raises(ProvisioningError, match=r"offers 0.1 GiB: run fewer trials at once \(parallelism: 1"):
        NodeProvisioner().place_local(gbdt, shop(), cpu_count=2, memory_gib=0.1)  # a GBDT has no batch_size


# -- calibration against a real trial --------------------------------------------------------------------------
def _calibration():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import calibrate_provisioner as calibration
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return calibration


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss carried over exec is Linux's")
def test_a_trials_measured_peak_is_its_own_not_its_launchers():
    """The launcher's high-water mark must not count as the trial's: Linux carries it into a child's
    ru_maxrss across exec, which once failed the F1 bound whenever earlier tests had grown pytest."""
    calibration = _calibration()
    ballast = bytearray(384 * 2**20)
    ballast[::4096] = b"\1" * len(range(0, len(ballast), 4096))  # touched: resident in the launcher
    code = (
        "import json, resource, sys; sys.path.insert(0, sys.argv[1]); import calibrate_provisioner as c; "
        "print(json.dumps([c.peak_rss_gib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20]))"
    )
    run = subprocess.run([sys.executable, "-c", code, str(REPO / "benchmarks")], capture_output=True,
                         text=True, check=True)  # fmt: skip
    own, inherited = json.loads(run.stdout)
    del ballast
    assert inherited >= 0.375  # what ru_maxrss reports: the launcher's 384 MiB at least
    assert 0 < own < 0.2 and calibration.peak_rss_gib() >= 0.375  # the child's own pages; ours


@pytest.mark.parametrize("family", ["gnn", "gbdt"])
def test_estimate_bounds_a_real_f1_trial(tmp_path: Path, family: str):
    """A tiny F1 trial of each family in its own process: its own peak RSS (not the launching pytest
    process's, see the test above) <= the estimate <= 3x the peak."""
    calibration = _calibration()
    params = {
        "gnn": {**calibration.BASE, "conv": "sage", "channels": 32, "layers": 2, "batch_size": 128,
                "fanouts": [8, 4], "max_steps_per_epoch": 2},
        "gbdt": {"family": "gbdt", "gbdt_trees": 20, "gbdt_leaves": 31, "gbdt_learning_rate": 0.05},
    }[family]  # fmt: skip
    trial = calibration.launch(params, tmp_path)  # imports while the stores are built
    try:
        prepared = calibration.prepare(tmp_path)
    except BaseException:
        trial.kill()
        trial.communicate()
        raise
    measured = calibration.collect(trial, timeout=180)
    estimate = estimate_trial(params, calibration.data_stats(prepared))
    assert (
        measured["steps"] == 2 if family == "gnn" else 0 < measured["steps"] <= 20
    )  # GNN steps, GBDT rounds
    assert measured["peak_rss_gib"] <= estimate.host_memory_gib <= 3 * measured["peak_rss_gib"]

import torch
from torch import nn

from ript_core.policy.dtensor import has_sharded_parameters
from ript_core.policy.fast.param_watch import ParameterWatch, watch


def walked(model: nn.Module) -> tuple[tuple[int, ...], tuple[torch.dtype, ...]]:
    """The reference: a fresh walk of the parameters."""
    ps = list(model.parameters())
    return tuple(p.data_ptr() for p in ps), tuple(p.dtype for p in ps)


def make() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 2)))


def test_unchanged_model_is_walked_once_and_matches_a_fresh_walk():
    model = make()
    watch = ParameterWatch(model)
    first = watch.fingerprint()
    assert first == walked(model)
    for _ in range(5):
        assert watch.fingerprint() == first
    assert watch.walks == 1


def test_in_place_updates_keep_the_fingerprint():
    model = make()
    watch = ParameterWatch(model)
    before = watch.fingerprint()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.load_state_dict(make().state_dict())  # copies into the same storage
    assert watch.fingerprint() == before == walked(model)


def test_replaced_storage_or_dtype_changes_it_without_a_new_walk():
    model = make()
    watch = ParameterWatch(model)
    before = watch.fingerprint()
    model[0].weight.data = torch.zeros(8, 4)
    after = watch.fingerprint()
    assert after != before and after == walked(model)
    model.to(torch.float64)
    assert watch.fingerprint() == walked(model)
    assert watch.fingerprint()[1][0] == torch.float64


def test_registrations_anywhere_invalidate_the_cached_list():
    model = make()
    watch = ParameterWatch(model)
    before = watch.fingerprint()
    walks = watch.walks
    model[0].weight = nn.Parameter(torch.zeros(8, 4))  # a new Parameter object
    after = watch.fingerprint()
    assert after != before and after == walked(model)
    assert watch.walks == walks + 1
    model[2] = nn.Sequential(nn.Linear(8, 2), nn.Linear(2, 2))  # a new submodule
    assert watch.fingerprint() == walked(model)
    assert len(watch.fingerprint()[0]) == 6
    model.load_state_dict(
        make().state_dict() | {"2.1.weight": torch.eye(2), "2.1.bias": torch.zeros(2)}, assign=True
    )
    assert watch.fingerprint() == walked(model)


def test_tensors_put_straight_into_a_parameter_dict_are_seen_without_a_walk():
    """FSDP's fully_shard writes ``module._parameters`` directly (no hook)."""
    model = make()
    w = ParameterWatch(model)
    before, walks = w.fingerprint(), w.walks
    model[0]._parameters["weight"] = nn.Parameter(torch.zeros(8, 4))
    assert w.fingerprint() != before and w.fingerprint() == walked(model)
    assert w.walks == walks


def test_sharded_follows_fully_shard_and_watch_is_one_per_model():
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    model = make()
    w = watch(model)
    assert watch(model) is w and watch(make()) is not w
    assert not w.sharded()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        fully_shard(model[0])
        assert w.sharded() and has_sharded_parameters(model)
    finally:
        dist.destroy_process_group()


def test_a_traced_module_list_slice_is_not_a_registration():
    """transformers' Gemma loops over ``self.layers[:n]``, a new ModuleList
    whose members register in it. Traced by torch.compile, a counted
    registration made the graph guard on the epoch and bump it on every call:
    a recompile and a fresh walk per call. Run eagerly it still counts."""
    from ript_core.policy.fast import param_watch

    layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])

    def run(x: torch.Tensor) -> torch.Tensor:
        for layer in layers[:2]:
            x = layer(x)
        return x

    torch._dynamo.reset()
    compiled = torch.compile(run, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 4)
    compiled(x)  # the trace
    before = param_watch._epoch
    frames_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for _ in range(3):
        compiled(x)
    assert param_watch._epoch == before  # the graph writes no epoch
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames_before  # no recompile
    run(x)  # eager: the slice's registrations are counted, as any others
    assert param_watch._epoch > before
    torch._dynamo.reset()

"""`canary-voice run --replicas`: parsing, the clear errors, and the instances it makes."""

from __future__ import annotations

import pytest

from services.ops.run import ALL_SERVICES, ReplicasError, expand, parse_replicas
from services.ops.supervisor import Service


def test_parses_counts_per_service():
    assert parse_replicas("api=2, orchestrator=3,telephony=2") == {"api": 2, "orchestrator": 3, "telephony": 2}
    assert parse_replicas("") == {}
    assert parse_replicas("webhooks=1,") == {"webhooks": 1}


@pytest.mark.parametrize("spec, part", [
    ("foo=2", "'foo'"),
    ("api=0", "'api=0'"),
    ("api=x", "'api=x'"),
    ("api=-1", "'api=-1'"),
    ("api", "'api'"),
    ("=2", "'=2'"),
    ("api=2,orchestrator=two", "'orchestrator=two'"),
    ("api=2,api=3", "'api'"),
])
def test_bad_input_names_the_offending_part(spec, part):
    with pytest.raises(ReplicasError) as err:
        parse_replicas(spec)
    assert part in str(err.value)
    assert str(err.value).startswith("--replicas")


def test_unknown_service_lists_the_known_ones():
    with pytest.raises(ReplicasError, match="orchestrator"):
        parse_replicas("foo=2")


def test_instances_share_the_module_and_api_ports_differ():
    svcs = [Service("api", "services.api"), Service("orchestrator", "services.orchestrator.service"),
            Service("webhooks", "services.webhooks")]
    out = expand(svcs, {"api": 3, "orchestrator": 2}, api_port=8100)
    assert [s.name for s in out] == ["api#1", "api#2", "api#3", "orchestrator#1", "orchestrator#2", "webhooks"]
    ports = [dict(s.env).get("CANARY_API_PORT") for s in out if s.module == "services.api"]
    assert ports == [None, "8101", "8102"]  # the first keeps CANARY_API_PORT (the public URL's port)
    # Nothing per instance besides the API's port: the group id (hence the partitions) is shared.
    assert all(s.env == () for s in out if s.module != "services.api")


def test_every_service_may_be_replicated():
    spec = ",".join(f"{s.name}=2" for s in ALL_SERVICES)
    assert set(parse_replicas(spec)) == {s.name for s in ALL_SERVICES}

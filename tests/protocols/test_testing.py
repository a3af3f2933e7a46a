"""Our own aggregator passes the property suite we ship (protocols.testing)."""

from hypothesis import given, settings

from protocols import SecAggClient, SecAggServer, Stage
from protocols.testing import check_aggregator, dropout_schedules, message_mutations, round_configs


def test_secagg_passes_the_shipped_property_suite():
    check_aggregator(SecAggServer, SecAggClient, max_examples=25, max_n=10)


@settings(max_examples=50)
@given(round_configs(max_n=15, active=None))
def test_round_configs_are_valid_by_construction(config):
    assert 2 * config.threshold > config.degree + 1 and config.threshold <= config.degree + 1
    assert 1 <= config.min_survivors <= config.n
    assert config.encoder.max_clients >= config.n


@settings(max_examples=50)
@given(dropout_schedules(10, max_dropped=3))
def test_dropout_schedules_name_clients_and_stages(schedule):
    assert len(schedule) <= 3
    assert all(0 <= i < 10 and isinstance(s, Stage) for i, s in schedule.items())


@settings(max_examples=50)
@given(message_mutations(b"SAGG\x01\x02 some message bytes"))
def test_message_mutations_always_change_the_bytes(mutated):
    assert mutated != b"SAGG\x01\x02 some message bytes"

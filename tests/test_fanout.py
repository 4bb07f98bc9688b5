"""How keys become task runs: per key up to the limit, batches above it, keys never lost."""

from selective_sync.sync.fanout import MIN_BATCH, plan_jobs, writers_in_flight


def test_per_key_jobs_up_to_the_limit():
    assert plan_jobs([5, 3, 9], per_key_task_limit=3, in_flight=8) == [[5], [3], [9]]


def test_batches_above_the_limit_keep_every_key_in_order():
    keys = list(range(10_000, 20_001))
    jobs = plan_jobs(keys, per_key_task_limit=200, in_flight=1)
    assert len(jobs) == 8
    assert [k for job in jobs for k in job] == keys
    assert len(plan_jobs(keys, per_key_task_limit=200, in_flight=8)) == 32


def test_a_few_keys_above_the_limit_go_in_batches_of_at_least_min_batch():
    keys = list(range(1, 61))
    jobs = plan_jobs(keys, per_key_task_limit=0, in_flight=8)  # the nightly's 60 keys
    assert [len(job) for job in jobs] == [MIN_BATCH, MIN_BATCH, 10]
    assert [k for job in jobs for k in job] == keys
    assert plan_jobs([7], per_key_task_limit=0, in_flight=8) == [[7]]


def test_one_writer_on_a_sqlite_state():
    assert writers_in_flight("sqlite:////tmp/state.db", max_workers=8) == 1
    assert writers_in_flight("postgresql+psycopg://u@h/db", max_workers=8) == 8

"""Order numbers never repeat (R6): past the six digits they grow, never wrap (`lpad` cuts a longer
string to its length, which made order 1,000,000 repeat order 100,000)."""

from tests.test_invoicing import awaiting_order


async def test_r6_order_numbers_past_six_digits_grow_and_never_repeat(store):
    # Tests run one at a time: the sequence is moved for this test and put back after it.
    saved = await store.pool.fetchval("SELECT last_value FROM order_number_seq")
    await store.pool.execute("SELECT setval('order_number_seq', 99999)")
    try:
        _, hundred_thousand = await awaiting_order(store)
        await store.pool.execute("SELECT setval('order_number_seq', 999999)")
        _, million = await awaiting_order(store)
    finally:
        await store.pool.execute("SELECT setval('order_number_seq', $1)", saved)
    assert hundred_thousand.endswith("-100000")
    assert million.endswith("-1000000") and million != hundred_thousand

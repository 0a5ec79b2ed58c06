"""The compiled record table behind the reference's accounts and entities
(``fundflow._core.Table``, ``core/src/table.rs``):
records come back equal, updates happen in place, values are kept once
without merging values that print apart, odd text survives, pickles load
in a process with another hash seed, and it is as small as it claims."""

from __future__ import annotations

import pickle
import subprocess
import sys
from decimal import Decimal

import pytest

from fundflow._core import Table
from fundflow.detectors.reference import Reference, account_table, entity_table
from fundflow.schemas.records import Account, Entity, Related


def acct(aid: str, owner: str = "E1", **kw) -> Account:
    return Account(account_id=aid, owner_id=owner, bank_id=kw.pop("bank_id", "B1"),
                   role=kw.pop("role", "lender_sub"), **kw)  # fmt: skip


def test_a_record_comes_back_equal_and_named_by_the_callers_key():
    t = account_table()
    a = acct("6200000000000000001", platform_id="P1", opened_at=1_772_294_400_000)
    t[a.account_id] = a
    key = "".join(["62", "00000000000000001"])  # equal, not the same object
    got = t.get(key)
    assert got == a and t.get(a.account_id) is got  # the record built last is kept
    assert t[key] == a and key in t and len(t) == 1
    assert t.get("6200000000000000002") is None
    assert t.get("6200000000000000002", "absent") == "absent"
    assert "6200000000000000002" not in t
    with pytest.raises(KeyError, match="6200000000000000002"):
        t["6200000000000000002"]


def test_setting_a_key_again_updates_its_row_in_place():
    t = account_table()
    t["A"] = acct("A", "E1", platform_id="P1", opened_at=5)
    t["B"] = acct("B", "E2")
    size = sys.getsizeof(t)
    t["A"] = acct("A", "E1", role="borrower_sub", platform_id=None, opened_at=None)
    assert sys.getsizeof(t) == size  # same owner text: nothing new in the arena
    assert list(t.items()) == [
        ("A", acct("A", "E1", role="borrower_sub")),
        ("B", acct("B", "E2")),
    ]
    t["A"] = acct("A", "E3")
    assert t["A"].owner_id == "E3" and len(t) == 2


def test_look_ups_agree_with_a_dict_through_updates():
    """Seeded random sets and gets over more keys than the cache of
    records built last holds, so its entries are replaced and dropped."""
    import random  # noqa: PLC0415

    rng = random.Random(7)
    t, model = account_table(), {}
    keys = [f"62{rng.randrange(10**17):017d}" for _ in range(1500)]
    for step in range(40_000):
        k = rng.choice(keys)
        if rng.random() < 0.3:
            model[k] = acct(k, f"E{step}", role=rng.choice(["personal", "lender_sub"]),
                            opened_at=rng.choice([None, step]))  # fmt: skip
            t[k] = model[k]
        else:
            assert t.get(k) == model.get(k)
            assert (k in t) == (k in model)
    assert len(t) == len(model) and dict(t.items()) == model


def test_a_record_that_cannot_be_stored_leaves_the_table_as_it_was():
    t = account_table()
    t["A"] = acct("A", opened_at=7)
    bad = msgspec_free_record(owner_id="E9", opened_at="soon")
    with pytest.raises(TypeError, match="'opened_at' must be an int or None, not str"):
        t["A"] = bad
    with pytest.raises(TypeError, match="'opened_at' must be an int or None, not str"):
        t["C"] = bad
    with pytest.raises(TypeError, match="'owner_id' must be a str or None, not int"):
        t["C"] = msgspec_free_record(owner_id=12)
    with pytest.raises(OverflowError):
        t["C"] = msgspec_free_record(opened_at=2**63)
    with pytest.raises(OverflowError, match="too small"):
        t["C"] = msgspec_free_record(opened_at=-(2**63))
    with pytest.raises(AttributeError, match="owner_id"):
        t["C"] = object()
    with pytest.raises(TypeError, match="table keys are str, not int"):
        t[1] = acct("1")
    with pytest.raises(TypeError, match="not removed"):
        del t["A"]
    assert list(t.items()) == [("A", acct("A", opened_at=7))]
    assert t.get(1) is None and 1 not in t and (-(2**62)) not in t


def msgspec_free_record(**fields):
    """Any object with the fields' attributes will do as a record."""
    from types import SimpleNamespace  # noqa: PLC0415

    base = {"owner_id": "E1", "bank_id": "B1", "role": "personal", "platform_id": None,
            "opened_at": None}  # fmt: skip
    return SimpleNamespace(**{**base, **fields})


def test_defaults_are_fields_not_stored():
    t = Table(Entity, ("entity_id", "kind"), "o", {"name": "", "licenses": ("custody",)})
    t["B"] = Entity(entity_id="B", name="a bank", kind="bank")
    want = Entity(entity_id="B", name="", kind="bank", licenses=("custody",))
    assert t["B"] == want and pickle.loads(pickle.dumps(t))["B"] == want
    with pytest.raises(TypeError, match="defaults must be a dict"):
        Table(Entity, ("entity_id", "kind"), "o", [("name", "")])
    with pytest.raises(TypeError, match="names must be str"):
        Table(Entity, ("entity_id", "kind"), "o", {1: ""})


def test_values_are_kept_once_but_never_merged_when_they_print_apart():
    t = entity_table()
    half, half2 = Decimal("0.5"), Decimal("0.50")
    rel = (Related(entity_id="P", relation="shareholder", share=half),)
    rel2 = (Related(entity_id="P", relation="shareholder", share=half2),)
    t["X"] = Entity(entity_id="X", name="", kind="company", licenses=("payment",), related=rel)
    t["Y"] = Entity(entity_id="Y", name="", kind="company", licenses=("payment",), related=rel2)
    t["Z"] = Entity(entity_id="Z", name="", kind="company", licenses=("payment",), related=rel)
    # "", "company", ("payment",), and the two relation tuples
    assert t.distinct_values == 5
    assert str(t["Y"].related[0].share) == "0.50"
    assert str(t["Z"].related[0].share) == "0.5"
    n = Table(Account, tuple(Account.__struct_fields__), "sooos")
    n["T"] = acct("T", bank_id="1", role="True", platform_id="None")
    assert (n["T"].bank_id, n["T"].role, n["T"].platform_id) == ("1", "True", "None")


def test_lone_surrogates_and_long_text_survive_and_pickle():
    t = account_table()
    odd = "\ud800账户\udfff"
    big = "9" * 3_000_000  # longer than an arena block
    t[odd] = acct(odd, owner="\udbff")
    t[big] = acct(big, owner=big)
    # Text lengths on either side of the one-byte length prefix.
    edges = ["k" * n for n in (254, 255, 256)]
    for k in edges:
        t[k] = acct(k, owner=k + "o")
    t["after"] = acct("after")
    back = pickle.loads(pickle.dumps(t))
    for table in (t, back):
        assert table[odd] == acct(odd, owner="\udbff")
        assert table[big].owner_id == big
        assert table["after"] == acct("after")
        assert [table[k].owner_id for k in edges] == [k + "o" for k in edges]
    assert list(back.keys()) == [odd, big, *edges, "after"]


def test_a_pickle_loads_in_a_process_with_another_hash_seed(tmp_path):
    t = account_table()
    for n in range(20_000):
        aid = f"62{n:017d}"
        t[aid] = acct(aid, f"E{n // 2:011d}", platform_id=f"P{n % 200}", opened_at=n or None)
    path = tmp_path / "table.pickle"
    path.write_bytes(pickle.dumps(t))
    code = (
        "import pickle, sys\n"
        f"t = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        "ok = all(t[f'62{n:017d}'].owner_id == f'E{n // 2:011d}' for n in range(20_000))\n"
        "print(len(t), ok, t['6200000000000019999'].platform_id, '62' in t)\n"
    )
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={"PYTHONHASHSEED": seed}, check=True)  # fmt: skip
        assert out.stdout.split() == ["20000", "True", "P199", "False"]


def test_iteration_is_in_insertion_order_and_reaches_rows_added_meanwhile():
    t = account_table()
    for k in "CAB":
        t[k] = acct(k)
    seen = []
    for k in t:
        seen.append(k)
        if k == "C":
            t["D"] = acct("D")
    assert seen == ["C", "A", "B", "D"]
    assert [a.account_id for a in t.values()] == seen
    assert list(t.keys()) == seen


def test_a_damaged_state_is_refused():
    t = account_table()
    t["A"] = acct("A")
    cls, args, (values, blob) = t.__reduce__()
    fresh = cls(*args)
    with pytest.raises(ValueError, match="truncated"):
        fresh.__setstate__((values, blob[:-3]))
    fresh = cls(*args)
    with pytest.raises(ValueError, match="missing value"):
        fresh.__setstate__((values[:1], blob))
    with pytest.raises(RuntimeError, match="holds rows"):
        t.__setstate__((values, blob))


def test_a_table_is_made_with_one_kind_per_field():
    with pytest.raises(ValueError, match="unknown field kind"):
        Table(Account, tuple(Account.__struct_fields__), "soooX")
    with pytest.raises(ValueError, match="got 6 names for 4 kinds"):
        Table(Account, tuple(Account.__struct_fields__), "sooo")
    with pytest.raises(TypeError, match="factory"):
        Table.__new__(Table)  # no table without its layout


def test_an_account_row_costs_under_a_hundred_bytes():
    t = account_table()
    n = 200_000
    for i in range(n):
        aid = f"62{i:017d}"
        t[aid] = acct(aid, f"E{i // 2:011d}", platform_id=f"PL{i % 200:010d}")
    # 40-byte row, 1 + 19 bytes of id, 1 + 12 of owner, a 4-byte slot per
    # 1.5 to 3 rows; chunks of 8,192 rows and 1 MiB text blocks round up.
    per_row = sys.getsizeof(t) / n
    assert 40 + 20 + 13 + 1.3 < per_row < 100, per_row


def test_a_reference_checkpointed_with_plain_dicts_loads_into_tables():
    ref = Reference(names=False)
    state = dict(vars(ref))
    state["accounts"] = {"A": acct("A", platform_id="P")}
    state["entities"] = {"E1": Entity(entity_id="E1", name="", kind="person")}
    old = Reference.__new__(Reference)
    old.__setstate__(state)
    assert type(old.accounts) is Table and type(old.entities) is Table
    assert old.accounts["A"] == acct("A", platform_id="P")
    assert old.entities["E1"].kind == "person"
    old.add(acct("B"))
    assert len(old.accounts) == 2


# The state the C table this one replaced pickled for two accounts (one
# keyed and owned by lone surrogates): checkpoints written by it load.
C_TABLE_STATE = bytes.fromhex(
    "0200000041310200000045310000000001000000020000000068faa49c010000"
    "03000000eda08003000000edafbf0000000003000000040000000000000000000080"
)


def test_the_state_is_the_one_the_c_table_wrote():
    t = account_table()
    t["A1"] = acct("A1", role="personal", opened_at=1_772_294_400_000)
    t["\ud800"] = acct("\ud800", "\udbff", role="lender_sub", platform_id="P1")
    cls, args, state = t.__reduce__()
    assert cls is Table and args == (Account, tuple(Account.__struct_fields__), "soooi", None)
    assert state == (["B1", "personal", None, "lender_sub", "P1"], C_TABLE_STATE)
    back = account_table()
    back.__setstate__(state)
    assert list(back.items()) == list(t.items())

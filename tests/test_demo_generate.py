"""The demo estate generator: contract, determinism, identity difficulty, churn, faults.

Everything reads the real files written to tmp_path, the way the ingest layer will. The
reference matcher below is deliberately simple: it is the "careful deterministic matcher" the
README promises will resolve the identities, and the evidence table it computes is the one
quoted in fabric/demo/README.md.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from fabric.demo import FAULTS, EstateSpec, generate_estate
from fabric.demo.noise import ascii_fold

SPEC = EstateSpec(customers=2000, days=7, history_days=60, seed=7, end_date=date(2025, 3, 31))
SUPPORT_COLUMNS = 12
#: The country table the dbt engineer implements: lower(trim(country)) -> ISO code.
COUNTRY_MAP = {
    "germany": "DE", "de": "DE", "deutschland": "DE",
    "austria": "AT", "at": "AT", "österreich": "AT",
    "switzerland": "CH", "ch": "CH", "schweiz": "CH", "suisse": "CH",
}


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("estate") / "demo"
    generate_estate(out, SPEC)
    return out


@pytest.fixture(scope="module")
def faulty_estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faulty") / "demo"
    generate_estate(out, EstateSpec(**{**SPEC.__dict__, "faults": FAULTS}))
    return out


def manifest_of(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


# --- readers --------------------------------------------------------------------------------


def layout_of(root: Path) -> dict[str, list[dict]]:
    return yaml.safe_load((root / "erp" / "layout.yaml").read_text(encoding="ascii"))


def erp_records(root: Path, entity: str) -> list[dict[str, str]]:
    fields = layout_of(root)[entity]
    out = []
    for path in sorted((root / "erp").glob(f"{entity}_*.txt")):
        for line in path.read_text(encoding="ascii").splitlines():
            out.append(
                {f["name"]: line[f["start"] - 1 : f["start"] - 1 + f["length"]].rstrip()
                 for f in fields}
            )
    return out


def support_records(path: Path) -> list[list[str]]:
    with path.open(encoding="cp1252", newline="") as fh:
        return list(csv.reader(fh))[1:]


def support_row_problem(row: list[str]) -> str:
    """'' for a well-formed ticket row, else the malformed kind the generator counts."""
    if len(row) != SUPPORT_COLUMNS:
        return "field_count"
    try:
        datetime.strptime(row[1], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return "opened_at"
    if row[11] not in {"", "1", "2", "3", "4", "5"}:
        return "satisfaction"
    return ""


@functools.cache  # estates are immutable once written; several tests read the same files
def web_lines(path: Path) -> list[dict | None]:
    out: list[dict | None] = []
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append(None)
    return out


def crm_rows(root: Path, table: str) -> list[tuple]:
    con = sqlite3.connect(root / "crm" / "crm.sqlite")
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    finally:
        con.close()


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def truth_of(root: Path) -> dict[tuple[str, str], str]:
    with (root / "truth" / "identity.csv").open(encoding="utf-8", newline="") as fh:
        return {(r["system"], r["source_key"]): r["entity_id"] for r in csv.DictReader(fh)}


# --- the reference matcher ------------------------------------------------------------------

_CALLING_CODES = ("49", "43", "41")


def norm_email(raw: str | None) -> str:
    return (raw or "").strip().lower()


def norm_phone(raw: str | None) -> str:
    """Digits only, national form: drop +49/0049/+43/+41 (any form) and the trunk 0."""
    text = (raw or "").strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("+") or digits.startswith("00"):
        digits = digits.lstrip("0")
        for code in _CALLING_CODES:
            if digits.startswith(code):
                digits = digits[len(code):]
                break
    return digits.lstrip("0")


def norm_name(raw: str) -> str:
    return re.sub(r"[^A-Z]", "", ascii_fold(raw).upper())


def split_name(raw: str) -> tuple[str, str]:
    """(first, last) from 'First Last' or 'Last, First' (any case)."""
    if "," in raw:
        last, _, first = raw.partition(",")
    else:
        first, _, last = raw.strip().rpartition(" ")
    return norm_name(first), norm_name(last)


def house_number(street: str) -> str:
    return street.strip().rsplit(" ", 1)[-1].upper()


@dataclass(frozen=True)
class Record:
    system: str
    key: str
    email: str = ""
    phone: str = ""
    first: str = ""
    last: str = ""
    postal: str = ""
    house: str = ""


@dataclass
class CrmIndex:
    by_email: dict[str, set[str]]
    by_phone: dict[str, set[str]]
    by_name_address: dict[tuple[str, str, str, str], set[str]]
    names: dict[str, tuple[str, str]]
    raw_emails: dict[str, set[str]]
    raw_phones: dict[str, set[str]]


def crm_index(root: Path) -> CrmIndex:
    index = CrmIndex(defaultdict(set), defaultdict(set), defaultdict(set), {},
                     defaultdict(set), defaultdict(set))
    for row in crm_rows(root, "customers"):
        crm_id = str(row[0])
        first, last = norm_name(row[1]), norm_name(row[2])
        index.names[crm_id] = (first, last)
        index.by_email[norm_email(row[3])].add(crm_id)
        index.by_phone[norm_phone(row[4])].add(crm_id)
        index.by_name_address[(first, last, row[6], house_number(row[5]))].add(crm_id)
        index.raw_emails[crm_id].add(row[3])
        index.raw_phones[crm_id].add(row[4])
    for _, crm_id, kind, value, _ in crm_rows(root, "contacts"):
        if kind == "email":
            index.by_email[norm_email(value)].add(str(crm_id))
            index.raw_emails[str(crm_id)].add(value)
        else:
            index.by_phone[norm_phone(value)].add(str(crm_id))
            index.raw_phones[str(crm_id)].add(value)
    return index


@functools.cache
def source_records(root: Path) -> list[Record]:
    """One record per non-CRM key, built only from well-formed rows."""
    records = [
        Record("erp", a["account_no"], a["email"], a["phone"], *_erp_name(a["account_name"]),
               a["postal_code"], house_number(a["street"]))
        for a in erp_records(root, "accounts")
    ]
    seen: set[str] = set()
    for path in sorted((root / "support").glob("tickets_*.csv")):
        for row in support_records(path):
            if support_row_problem(row) or row[2] in seen:
                continue
            seen.add(row[2])
            records.append(Record("support", row[2], row[4], row[5], *split_name(row[3])))
    users: dict[str, str] = {}
    for path in sorted((root / "web").glob("events_*.jsonl")):
        for event in web_lines(path):
            if event is not None:
                users.setdefault(event["user"]["id"], event["user"]["email"])
    records += [Record("web", uid, email) for uid, email in sorted(users.items())]
    return records


def _erp_name(account_name: str) -> tuple[str, str]:
    last, _, first = account_name.partition(",")
    return norm_name(first), norm_name(last)


def match(record: Record, index: CrmIndex) -> tuple[str | None, str]:
    """(crm_id or None, rule): email, then phone + last name (+ first name), then address."""
    by_email = index.by_email.get(norm_email(record.email), set()) if record.email else set()
    if len(by_email) == 1:
        return next(iter(by_email)), "email"
    phone = norm_phone(record.phone)
    if phone and record.last:
        same_last = [c for c in index.by_phone.get(phone, ()) if index.names[c][1] == record.last]
        if len(same_last) > 1:
            same_last = [c for c in same_last if index.names[c][0] == record.first]
        if len(same_last) == 1:
            return same_last[0], "phone_last_name"
    if record.postal:
        key = (record.first, record.last, record.postal, record.house)
        candidates = index.by_name_address.get(key, set())
        if len(candidates) == 1:
            return next(iter(candidates)), "name_address"
    return None, "none"


def evidence(record: Record, crm_id: str, index: CrmIndex) -> set[str]:
    """Which normalised evidence types tie `record` to CRM customer `crm_id`."""
    found = set()
    if record.email and crm_id in index.by_email.get(norm_email(record.email), ()):
        found.add("email")
    phone = norm_phone(record.phone)
    if phone and crm_id in index.by_phone.get(phone, ()) and index.names[crm_id][1] == record.last:
        found.add("phone_last_name")
    key = (record.first, record.last, record.postal, record.house)
    if record.postal and crm_id in index.by_name_address.get(key, ()):
        found.add("name_address")
    return found


@dataclass
class IdentityReport:
    links: int
    no_exact_share: float
    precision: float
    recall: float
    unresolvable: int
    table: list[tuple[str, int, float, float, float, float]]  # system, links, email, phone, addr, no exact


def identity_report(root: Path) -> IdentityReport:
    index = crm_index(root)
    truth = truth_of(root)
    crm_of_entity = {entity: key for (system, key), entity in truth.items() if system == "crm"}
    per_system: dict[str, Counter[str]] = defaultdict(Counter)
    tp = fp = fn = unresolvable = 0
    for rec in source_records(root):
        true_crm = crm_of_entity.get(truth[(rec.system, rec.key)])
        predicted, _ = match(rec, index)
        if predicted is not None and predicted == true_crm:
            tp += 1
        elif predicted is not None:
            fp += 1
        if true_crm is None:
            continue
        if predicted != true_crm:
            fn += 1
        stats = per_system[rec.system]
        stats["links"] += 1
        found = evidence(rec, true_crm, index)
        unresolvable += not found
        for kind in found:
            stats[kind] += 1
        exact = (rec.email and rec.email in index.raw_emails[true_crm]) or (
            rec.phone and rec.phone in index.raw_phones[true_crm]
        )
        stats["no_exact"] += not exact
    table = []
    for system in ("erp", "support", "web"):
        s = per_system[system]
        n = max(s["links"], 1)
        table.append((system, s["links"], s["email"] / n, s["phone_last_name"] / n,
                      s["name_address"] / n, s["no_exact"] / n))
    links = sum(s["links"] for s in per_system.values())
    return IdentityReport(
        links=links,
        no_exact_share=sum(s["no_exact"] for s in per_system.values()) / links,
        precision=tp / max(tp + fp, 1),
        recall=(links - fn) / links,
        unresolvable=unresolvable,
        table=table,
    )


# --- tests ----------------------------------------------------------------------------------


def test_same_spec_gives_identical_files(estate: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_estate(again, SPEC)
    for table in ("customers", "contacts", "cancellations"):
        assert crm_rows(again, table) == crm_rows(estate, table)
    assert file_digests(again) == file_digests(estate)  # the SQLite file too, byte for byte


def test_manifest_describes_the_estate(estate: Path) -> None:
    m = manifest_of(estate)
    assert (m["seed"], m["customers"], m["days"], m["history_days"]) == (7, 2000, 7, 60)
    assert m["end_date"] == "2025-03-31"
    assert m["window_start"] == "2025-03-25"
    assert m["history_start"] == "2025-01-24"
    assert m["churn_horizon_days"] == 30 and m["faults"] == []
    day_files = {p for p in m["files"] if p.startswith(("erp/", "support/", "web/"))}
    assert len(day_files) == 5 * 67
    on_disk = {str(p.relative_to(estate)) for p in estate.rglob("*") if p.is_file()}
    assert set(m["files"]) | {"manifest.json", "erp/layout.yaml"} == on_disk


def test_manifest_counts_equal_file_contents(estate: Path) -> None:
    m = manifest_of(estate)
    lengths = {e: sum(f["length"] for f in fields) for e, fields in layout_of(estate).items()}
    for name, info in m["files"].items():
        path = estate / name
        if name.startswith("erp/"):
            lines = path.read_bytes().decode("ascii").split("\n")
            assert lines[-1] == ""
            assert len(lines) - 1 == info["rows"], name
            entity = path.name.split("_")[0]
            assert all(len(line) == lengths[entity] for line in lines[:-1]), name
        elif name.startswith("support/"):
            rows = support_records(path)
            assert len(rows) == info["rows"], name
            assert path.read_bytes().count(b"\r\n") == info["lines"], name
            kinds = Counter(support_row_problem(r) for r in rows)
            kinds.pop("", None)
            assert {k: v for k, v in info["malformed_by_kind"].items() if v} == dict(kinds), name
            assert sum(kinds.values()) == info["malformed"]
        elif name.startswith("web/"):
            parsed = web_lines(path)
            assert len(parsed) == info["rows"], name
            assert sum(p is None for p in parsed) == info["malformed"], name
        elif name.startswith("truth/"):
            assert len(path.read_text(encoding="utf-8").splitlines()) - 1 == info["rows"]
    for table, count in m["files"]["crm/crm.sqlite"]["tables"].items():
        assert len(crm_rows(estate, table)) == count
    tickets = [v for k, v in m["files"].items() if k.startswith("support/tickets_")]
    assert m["totals"]["support/tickets"] == {
        "files": 67,
        "rows": sum(v["rows"] for v in tickets),
        "malformed": sum(v["malformed"] for v in tickets),
    }
    assert set(m["totals"]) == {
        "erp/accounts", "erp/invoices", "erp/payments", "support/tickets", "web/events"
    }


def test_malformed_shares_and_volumes_are_realistic(estate: Path) -> None:
    m = manifest_of(estate)
    files = m["files"]
    support = [v for k, v in files.items() if k.startswith("support/")]
    web = [v for k, v in files.items() if k.startswith("web/")]
    tickets = sum(v["rows"] for v in support)
    events = sum(v["rows"] for v in web)
    assert 0.002 < sum(v["malformed"] for v in support) / tickets < 0.01
    assert 0.001 < sum(v["malformed"] for v in web) / events < 0.004
    customer_days = 2000 * 67
    assert 0.3 < events / customer_days < 1.0
    assert 0.01 < tickets / customer_days < 0.02


def test_support_export_is_cp1252_crlf_with_multiline_quoted_text(estate: Path) -> None:
    raw = b"".join(p.read_bytes() for p in sorted((estate / "support").glob("*.csv")))
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    for char in "é€ü\u2019\u201e":  # right quote, low quote: cp1252 0x92, 0x84
        assert char.encode("cp1252") in raw
    assert raw.replace(b"\r\n", b"").count(b"\n") == 0  # no bare LF anywhere
    rows = [r for p in sorted((estate / "support").glob("*.csv")) for r in support_records(p)]
    descriptions = [r[9] for r in rows if len(r) == SUPPORT_COLUMNS]
    assert any("\r\n" in d for d in descriptions)
    assert any('"' in d for d in descriptions)
    header = (estate / "support" / "tickets_20250331.csv").read_bytes().split(b"\r\n")[0]
    assert header.decode("cp1252").split(",")[:3] == ["ticket_id", "opened_at", "requester_id"]


def test_web_events_have_nested_objects(estate: Path) -> None:
    events = [e for e in web_lines(estate / "web" / "events_20250331.jsonl") if e]
    assert {e["type"] for e in events} >= {"login", "page_view", "speed_test", "plan_view"}
    assert all(set(e) == {"event_id", "ts", "type", "user", "device", "props"} for e in events)
    assert all(e["ts"].startswith("2025-03-31T") and e["ts"].endswith("Z") for e in events)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))


def test_every_truth_key_appears_in_its_system(estate: Path) -> None:
    truth = truth_of(estate)
    by_system: dict[str, set[str]] = defaultdict(set)
    for system, key in truth:
        by_system[system].add(key)
    assert by_system["crm"] == {str(r[0]) for r in crm_rows(estate, "customers")}
    assert by_system["erp"] == {a["account_no"] for a in erp_records(estate, "accounts")}
    keys = {(r.system, r.key) for r in source_records(estate)}
    assert by_system["support"] == {k for s, k in keys if s == "support"}
    assert by_system["web"] == {k for s, k in keys if s == "web"}
    entities = set(truth.values())
    assert any(e.startswith("P") for e in entities)
    converted = {e for (s, _), e in truth.items() if s == "crm" and e.startswith("P")}
    assert converted, "some prospects must have become CRM customers"


def test_identity_is_hard_but_resolvable(estate: Path) -> None:
    report = identity_report(estate)
    assert report.unresolvable == 0
    assert report.no_exact_share >= 0.30
    assert report.precision >= 0.97
    assert report.recall >= 0.97
    print("\nsystem   links  email  phone+last  name+addr  no exact raw key")
    for system, links, email, phone, addr, no_exact in report.table:
        print(f"{system:8} {links:6d} {email:6.1%} {phone:10.1%} {addr:10.1%} {no_exact:8.1%}")
    print(f"all      {report.links:6d} no exact raw key: {report.no_exact_share:.1%} "
          f"precision {report.precision:.2%} recall {report.recall:.2%}")


def test_hard_negatives_exist(estate: Path) -> None:
    customers = crm_rows(estate, "customers")
    phones = Counter(norm_phone(r[4]) for r in customers)
    shared = [r for r in customers if phones[norm_phone(r[4])] > 1]
    assert len(shared) >= 0.02 * len(customers)
    for a in shared:  # household members differ in first name and email
        mates = [b for b in shared if norm_phone(b[4]) == norm_phone(a[4]) and b is not a]
        assert all(norm_name(b[1]) != norm_name(a[1]) for b in mates)
        assert all(norm_email(b[3]) != norm_email(a[3]) for b in mates)
    truth = truth_of(estate)
    crm_last = {norm_name(r[2]) for r in customers}
    prospect_names = [
        rec.last for rec in source_records(estate)
        if rec.system == "support" and truth[("support", rec.key)].startswith("P")
    ]
    assert sum(last in crm_last for last in prospect_names) >= 0.5 * len(prospect_names)


def test_country_texts_map_to_dach(estate: Path) -> None:
    texts = {r[8] for r in crm_rows(estate, "customers")}
    assert {COUNTRY_MAP[t.strip().lower()] for t in texts} == {"DE", "AT", "CH"}
    assert {a["country_code"] for a in erp_records(estate, "accounts")} == {"DE", "AT", "CH"}


def test_churn_rate_and_cancellations(estate: Path) -> None:
    m = manifest_of(estate)
    start, end = date.fromisoformat(m["history_start"]), date.fromisoformat(m["end_date"])
    with (estate / "truth" / "churn.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    exposure = churned = 0
    for r in rows:
        begin = max(date.fromisoformat(r["signup_date"]), start)
        stop = date.fromisoformat(r["churn_date"]) if r["churn_date"] else end + timedelta(1)
        exposure += max((min(stop, end + timedelta(1)) - begin).days, 0)
        churned += bool(r["churn_date"]) and stop <= end
    monthly = churned / (exposure / 30.44)
    assert 0.015 < monthly < 0.04, monthly
    assert any(r["churn_date"] > m["end_date"] for r in rows), "hidden future churn missing"
    expected = {(int(r["crm_id"]), r["churn_date"]) for r in rows if r["churn_date"]
                and r["churn_date"] <= m["end_date"]}
    cancellations = {(row[1], row[2]) for row in crm_rows(estate, "cancellations")}
    assert cancellations == expected


def test_churned_customers_fall_silent(estate: Path) -> None:
    truth = truth_of(estate)
    with (estate / "truth" / "churn.csv").open(encoding="utf-8") as fh:
        churn_date = {r["entity_id"]: r["churn_date"] for r in csv.DictReader(fh)
                      if r["churn_date"]}
    for inv in erp_records(estate, "invoices"):
        gone = churn_date.get(truth[("erp", inv["account_no"])])
        assert not gone or inv["invoice_date"] < gone.replace("-", "")
    for path in sorted((estate / "web").glob("*.jsonl")):
        for e in web_lines(path):
            if e is not None:
                gone = churn_date.get(truth[("web", e["user"]["id"])])
                assert not gone or e["ts"][:10] < gone


def test_behaviour_signals_approaching_churn(estate: Path) -> None:
    """Per active user-day, cancel-page views are far likelier in the 30 days before churn."""
    truth = truth_of(estate)
    with (estate / "truth" / "churn.csv").open(encoding="utf-8") as fh:
        churn_date = {r["entity_id"]: r["churn_date"] for r in csv.DictReader(fh)}
    active: set[tuple[str, bool]] = set()  # (user, day) pairs, flagged "churns within 30 days"
    views: Counter[bool] = Counter()
    for path in sorted((estate / "web").glob("*.jsonl")):
        for e in web_lines(path):
            if e is None:
                continue
            gone = churn_date.get(truth[("web", e["user"]["id"])], "")
            day = e["ts"][:10]
            soon = bool(gone) and (date.fromisoformat(gone) - date.fromisoformat(day)).days <= 30
            active.add((e["user"]["id"] + day, soon))
            views[soon] += e["type"] == "cancel_page_view"
    days = Counter(soon for _, soon in active)
    assert views[True] / days[True] > 5 * views[False] / days[False]


def test_bad_country_fault(estate: Path, faulty_estate: Path) -> None:
    m = manifest_of(faulty_estate)
    customers = crm_rows(faulty_estate, "customers")
    last_day = [r for r in customers if r[12].startswith(m["end_date"])]
    assert len(last_day) >= 50
    assert m["files"]["crm/crm.sqlite"]["bad_country_rows"] == len(last_day)
    assert all(r[8].strip().lower() not in COUNTRY_MAP for r in last_day)
    assert all(r[8].strip().lower() in COUNTRY_MAP for r in customers if r not in last_day)
    clean = {r[0]: r for r in crm_rows(estate, "customers")}
    assert all(clean[r[0]][:8] == r[:8] for r in customers)


def test_faults_only_touch_what_they_break(estate: Path, faulty_estate: Path) -> None:
    clean, faulty = file_digests(estate), file_digests(faulty_estate)
    changed = {k for k in clean if clean[k] != faulty[k]}
    assert changed == {
        "manifest.json",
        "crm/crm.sqlite",  # bad_country
        "support/tickets_20250331.csv",
        "web/events_20250331.jsonl",
    }
    before, after = manifest_of(estate)["files"], manifest_of(faulty_estate)["files"]
    for name in ("support/tickets_20250331.csv", "web/events_20250331.jsonl"):
        extra = after[name]["fault_malformed"]
        assert extra >= 5
        assert after[name]["rows"] == before[name]["rows"] + extra
        assert after[name]["malformed"] == before[name]["malformed"] + extra
    rows = support_records(faulty_estate / "support" / "tickets_20250331.csv")
    assert sum(bool(support_row_problem(r)) for r in rows) == after[
        "support/tickets_20250331.csv"]["malformed"]


def test_unknown_fault_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad_country, malformed_rows"):
        generate_estate(tmp_path / "x", EstateSpec(customers=10, faults=("flood",)))
    assert not (tmp_path / "x").exists()


def test_a_crash_keeps_the_previous_estate(tmp_path: Path) -> None:
    spec = EstateSpec(customers=200, days=2, history_days=3, end_date=date(2025, 1, 10))
    out = tmp_path / "demo"
    generate_estate(out, spec)
    before = file_digests(out)
    stages: list[tuple[str, int, int]] = []

    def explode(stage: str, done: int, total: int) -> None:
        stages.append((stage, done, total))
        if stage == "days" and done == 3:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        generate_estate(out, EstateSpec(**{**spec.__dict__, "seed": 1}), progress=explode)
    assert file_digests(out) == before
    assert not (tmp_path / "demo.tmp" / "manifest.json").exists()
    assert ("days", 1, 5) in stages

    reported: list[str] = []
    generate_estate(out, spec, progress=lambda s, d, t: reported.append(f"{s} {d}/{t}"))
    assert reported[-1] == "truth 1/1" and "days 5/5" in reported
    assert not (tmp_path / "demo.tmp").exists()


def test_default_end_date_is_yesterday(tmp_path: Path) -> None:
    m = generate_estate(tmp_path / "d", EstateSpec(customers=50, days=1, history_days=0))
    assert m["end_date"] == str(datetime.now(UTC).date() - timedelta(days=1))
    assert m["history_start"] == m["window_start"] == m["end_date"]

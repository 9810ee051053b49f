"""Search sessions: who searched what, what a simulated search engine showed, and what they did with it.

A session is one query for one leaf (chosen by Zipf popularity), a results page of 8-10 listings that is
mostly but not only that leaf, impressions for the page, then position-biased clicks, contacts and
conversations that are far likelier on relevant listings. That asymmetry is the signal the label miner
has to find. Bot sessions and expired (pre-retention) sessions are planted here too; bad rows are
planted later by eventlog.py on top of these clean events.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tagmill.config import DemoConfig
from tagmill.demo.catalog import Catalog, listings_of_leaf, popularity_ranks
from tagmill.demo.queries import QueryForms, choose_query
from tagmill.demo.randomness import py_stream, stream
from tagmill.demo.vocabulary import Leaf

ACTIONS = ("impression", "click", "contact", "in_conversation")
NO_CLICK = "no_click"
"""Valid synonym of "impression" used by ~3 % of impression rows."""
NO_CLICK_SHARE = 0.03
ANONYMOUS_SHARE = 0.10
SESSIONS_PER_USER = 4
RELEVANT_SHARE = (0.70, 0.80)
SIBLING_SHARE = 0.6
"""Share of a page's irrelevant results drawn from sibling leaves (the rest: anywhere)."""
POSITION_DECAY = 0.7
CLICK = {True: 0.45, False: 0.12}
CONTACT = {True: 0.35, False: 0.04}
CONVERSATION = {True: 0.5, False: 0.05}
REPEAT_CLICK_SHARE = 0.10
BOT_CLICKS = (600, 2000)
EXPIRED_DAYS = (1, 60)
HOUR_WEIGHTS = (1.0, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.0, 2.2, 2.3, 2.4, 2.5, 2.4, 2.3, 2.3, 2.4, 2.6, 2.9,
                3.2, 3.3, 3.0, 2.4, 1.6)
DAY = 86400


class Event(NamedTuple):
    time: int
    """Seconds since the epoch, UTC."""
    session: int
    """Session number: orders events of one second across sessions."""
    seq: int
    session_id: str
    user_id: str | None
    query: str
    product_id: str
    position: int
    action: str
    partition: str
    """Date of the file it is written to: its own UTC date, or the earliest date for late-arriving data."""
    kind: str
    """"normal", "expired" or "bot"."""


@dataclass(frozen=True)
class SessionLog:
    events: list[Event]
    sessions: int
    expired_sessions: int
    bot_sessions: int
    users: int
    """Distinct user ids that appear (anonymous sessions have none)."""
    first_date: dt.date
    """Earliest date of the event window (its partition also receives the expired events)."""


def epoch(day: dt.date) -> int:
    return calendar.timegm(day.timetuple())


class SearchEngine:
    """Returns a page of 8-10 listings for a leaf: ~70-80 % of that leaf, the rest siblings or anything."""

    def __init__(self, leaves: list[Leaf], catalog: Catalog):
        by_leaf = listings_of_leaf(catalog.listings, len(leaves))
        self.ids = [[listing.product_id for listing in group] for group in by_leaf]
        self.leaf_of = {listing.product_id: listing.leaf_index for listing in catalog.listings}
        self.all_ids = [listing.product_id for listing in catalog.listings]
        self.sibling_ids = [[pid for other in leaves if (other.domain, other.group) == (leaf.domain, leaf.group)
                             and other.index != leaf.index for pid in self.ids[other.index]] for leaf in leaves]

    def page(self, leaf: int, rnd: random.Random) -> list[tuple[str, bool]]:
        """(product_id, relevant) in rank order."""
        size = min(rnd.randint(8, 10), len(self.all_ids))
        own = self.ids[leaf]
        shown = rnd.sample(own, min(len(own), round(size * rnd.uniform(*RELEVANT_SHARE))))
        chosen = set(shown)
        while len(shown) < size:
            siblings = self.sibling_ids[leaf]
            pool = siblings if siblings and rnd.random() < SIBLING_SHARE else self.all_ids
            pid = rnd.choice(pool)
            if pid not in chosen:
                chosen.add(pid)
                shown.append(pid)
        rnd.shuffle(shown)
        return [(pid, self.leaf_of[pid] == leaf) for pid in shown]


def browse(page: list[tuple[str, bool]], rnd: random.Random) -> list[tuple[int, str, int, str]]:
    """One session's actions as (seconds after start, product_id, position, action), strictly increasing.

    Impressions come one second apart; then each result may be clicked (p = rate / position^0.7), the
    click maybe repeated, then contacted given the click, then a conversation given the contact.
    """
    out = [(i, pid, i + 1, NO_CLICK if rnd.random() < NO_CLICK_SHARE else "impression")
           for i, (pid, _) in enumerate(page)]
    t = len(page) + rnd.randint(2, 20)
    for position, (pid, relevant) in enumerate(page, start=1):
        if rnd.random() >= CLICK[relevant] / position ** POSITION_DECAY:
            continue
        clicks = rnd.randint(2, 4) if rnd.random() < REPEAT_CLICK_SHARE else 1
        for _ in range(clicks):
            out.append((t, pid, position, "click"))
            t += rnd.randint(3, 60)
        if rnd.random() < CONTACT[relevant]:
            out.append((t, pid, position, "contact"))
            t += rnd.randint(10, 180)
            if rnd.random() < CONVERSATION[relevant]:
                out.append((t, pid, position, "in_conversation"))
                t += rnd.randint(30, 600)
        t += rnd.randint(2, 30)
    return out


def _start_time(day_start: int, rnd: random.Random) -> int:
    hour = rnd.choices(range(24), weights=HOUR_WEIGHTS)[0]
    return day_start + hour * 3600 + rnd.randrange(3600)


def _fit(start: int, duration: int, end: int, rnd: random.Random) -> int:
    """Move a session back so its last event is before `end` (exclusive)."""
    if start + duration >= end:
        start = end - 1 - duration - rnd.randrange(900)
    return start


def simulate_sessions(leaves: list[Leaf], catalog: Catalog, forms: dict[str, QueryForms], cfg: DemoConfig,
                      run_date: dt.date, retention_days: int) -> SessionLog:
    """All clean events: `cfg.sessions` human sessions (some of them expired) and `cfg.bot_sessions` bots."""
    rng, rnd = stream(cfg.seed, "sessions"), py_stream(cfg.seed, "sessions")
    engine = SearchEngine(leaves, catalog)
    first_date = run_date - dt.timedelta(days=cfg.days - 1)
    window_start, window_end = epoch(first_date), epoch(run_date) + DAY
    cutoff = epoch(run_date - dt.timedelta(days=retention_days))
    first_partition = first_date.isoformat()

    active = np.array([len(ids) > 0 for ids in engine.ids])
    ranks = popularity_ranks(len(leaves), cfg.seed)
    weights = np.where(active, 1.0 / (ranks + 1.0) ** cfg.zipf_exponent, 0.0)
    leaf_of_session = rng.choice(len(leaves), cfg.sessions, p=weights / weights.sum())
    n_users = max(1, round(cfg.sessions / SESSIONS_PER_USER))
    n_expired = 0 if cfg.expired_share <= 0 else min(cfg.sessions, max(1, round(cfg.expired_share * cfg.sessions)))
    expired = set(rng.choice(cfg.sessions, n_expired, replace=False).tolist())
    session_ids = [f"s{n:08d}" for n in rng.choice(10**8, cfg.sessions + cfg.bot_sessions, replace=False)]
    user_ids = [f"u{n:07d}" for n in rng.choice(10**7, n_users + cfg.bot_sessions, replace=False)]

    events: list[Event] = []
    for s in range(cfg.sessions):
        leaf = leaves[int(leaf_of_session[s])]
        query, _ = choose_query(forms[leaf.leaf_id], rnd, cfg.chinese_share, cfg.misspelling_share)
        user = None if rnd.random() < ANONYMOUS_SHARE else user_ids[rnd.randrange(n_users)]
        actions = browse(engine.page(leaf.index, rnd), rnd)
        duration = actions[-1][0]
        if s in expired:
            day_start = cutoff - rnd.randint(*EXPIRED_DAYS) * DAY
            start = _fit(_start_time(day_start, rnd), duration, day_start + DAY, rnd)
            kind = "expired"
        else:
            day_start = window_start + rnd.randrange(cfg.days) * DAY
            start = _fit(_start_time(day_start, rnd), duration, window_end, rnd)
            kind = "normal"
        for seq, (offset, pid, position, action) in enumerate(actions):
            t = start + offset
            partition = first_partition if kind == "expired" else _date(t)
            events.append(Event(t, s, seq, session_ids[s], user, query, pid, position, action, partition, kind))

    for b in range(cfg.bot_sessions):
        s = cfg.sessions + b
        query = leaves[int(rng.choice(np.flatnonzero(active)))].name_en
        clicks = rnd.randint(*BOT_CLICKS)
        steps = [rnd.randint(1, 3) for _ in range(clicks)]
        start = _fit(window_start + rnd.randrange(cfg.days * DAY), sum(steps), window_end, rnd)
        t = start
        for seq, step in enumerate(steps):
            pid = engine.all_ids[rnd.randrange(len(engine.all_ids))]
            events.append(Event(t, s, seq, session_ids[s], user_ids[n_users + b], query, pid,
                                rnd.randint(1, 10), "click", _date(t), "bot"))
            t += step
    users = len({e.user_id for e in events if e.user_id is not None})
    return SessionLog(events, cfg.sessions, n_expired, cfg.bot_sessions, users, first_date)


_DATES: dict[int, str] = {}


def _date(t: int) -> str:
    day = t // DAY
    if day not in _DATES:
        _DATES[day] = dt.date.fromordinal(dt.date(1970, 1, 1).toordinal() + day).isoformat()
    return _DATES[day]

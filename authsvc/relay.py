"""The relay: delivers the outbox, right after each commit that queued mail and now and then.

One daemon thread per process: gunicorn.conf.py starts it in each worker
after the fork (a thread does not survive a fork, so never in the master),
and a process that queues mail without one starts one, so `flask run` and
other servers deliver too. It wakes right after a commit that queued mail,
and every MAIL_POLL_INTERVAL seconds for retries and for mail that other
processes queued.

Rows are claimed atomically (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite:
one conditional UPDATE), delivered outside any transaction, then marked
sent (the body dropped) or scheduled again with exponential backoff and
jitter. A claim is a lease: a worker killed mid-send holds its rows only
until the lease ends. The relay survives every error, logs one line for
it, and tries again later; it never loses a row.
"""

import logging
import os
import random
import secrets
import threading
from collections import Counter
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app, g

from authsvc import audit, mail, mailflows, telemetry
from authsvc.extensions import db
from authsvc.models import MailOutbox, utcnow
from authsvc.outages import roll_back

LEASE = timedelta(minutes=5)
BATCH = 20

outbox = MailOutbox.__table__
log = logging.getLogger("authsvc.mail.relay")


def _due(now):
    """Return the condition 'pending and due, or claimed by someone whose lease ended'."""
    return sa.or_(
        sa.and_(outbox.c.state == "pending", outbox.c.next_attempt_at <= now),
        sa.and_(outbox.c.state == "sending", outbox.c.claimed_until < now),
    )


def claim_due(claim):
    """Mark up to BATCH due rows as this claimer's, and return them."""
    now = utcnow()
    candidates = (
        sa.select(outbox.c.id).where(_due(now)).order_by(outbox.c.next_attempt_at).limit(BATCH)
    )
    if db.engine.dialect.name == "postgresql":
        # Rows another worker is claiming right now are skipped, not waited for.
        chosen = db.session.scalars(candidates.with_for_update(skip_locked=True)).all()
    else:
        # SQLite serialises writers: the UPDATE and its sub-select are one step.
        chosen = candidates.scalar_subquery()
    db.session.execute(
        outbox.update()
        .where(outbox.c.id.in_(chosen), _due(now))
        .values(state="sending", claim=claim, claimed_until=now + LEASE)
    )
    db.session.commit()
    rows = db.session.execute(
        sa.select(outbox).where(outbox.c.claim == claim).order_by(outbox.c.id)
    ).all()
    db.session.commit()
    return rows


def _settle(row, claim, **values):
    """Update a claimed row, unless its lease ended and someone else claimed it."""
    db.session.execute(
        outbox.update()
        .where(outbox.c.id == row.id, outbox.c.claim == claim)
        .values(attempts=row.attempts + 1, claim=None, claimed_until=None, **values)
    )


def mark_sent(row, claim):
    """Record a delivered mail and drop its body."""
    _settle(row, claim, state="sent", message=None, sent_at=utcnow(), last_error=None)
    db.session.commit()
    telemetry.MAIL_SENT.inc()
    return "sent"


def give_up(row, claim, reason):
    """Stop trying a mail: drop its body, log one line, audit it."""
    _settle(row, claim, state="given_up", message=None, last_error=reason)
    audit.record("mail_given_up")
    db.session.commit()
    telemetry.MAIL_GIVEN_UP.inc()
    log.error(
        "mail %s (%s) given up after %d attempt(s): %s", row.id, row.kind, row.attempts + 1, reason
    )
    return "given_up"


def retry_delay(attempts):
    """Return the wait before the next attempt: doubling from MAIL_RETRY_BASE, with jitter."""
    config = current_app.config
    delay = min(config["MAIL_RETRY_BASE"] * 2 ** min(attempts, 20), config["MAIL_RETRY_MAX"])
    return timedelta(seconds=delay * random.uniform(0.75, 1.25))  # noqa: S311 (not a secret)


def retry_or_give_up(row, claim, reason):
    """Schedule another attempt, or give up once about a day has passed."""
    next_attempt = utcnow() + retry_delay(row.attempts)
    deadline = row.created_at + timedelta(seconds=current_app.config["MAIL_GIVE_UP_AFTER"])
    if next_attempt > deadline:
        return give_up(row, claim, reason)
    _settle(row, claim, state="pending", next_attempt_at=next_attempt, last_error=reason)
    db.session.commit()
    telemetry.MAIL_RETRIED.inc()
    wait = (next_attempt - utcnow()).total_seconds()
    log.warning(
        "mail %s (%s) not sent, attempt %d: %s; next try in %d s",
        row.id,
        row.kind,
        row.attempts + 1,
        reason,
        wait,
    )
    return "retried"


def process(row, claim):
    """Turn a claimed row into a mail and deliver it; return what became of it."""
    try:
        kind, payload = row.kind, mail.unseal_payload(row.message)
        if kind == mailflows.RESET_REQUEST:
            kind, payload = mailflows.prepare_reset(row, claim, payload["to"])
            if kind is None:
                return "dropped"
        message = mail.build_message(kind, payload)
        mail.deliver(message)
    except Exception as error:
        db.session.rollback()
        reason = mail.describe(error)
        if mail.permanent(error):
            return give_up(row, claim, reason)
        return retry_or_give_up(row, claim, reason)
    return mark_sent(row, claim)


def count_pending():
    """Set the pending-mail gauge from the outbox."""
    pending = db.session.scalar(
        sa.select(sa.func.count()).where(outbox.c.state.in_(("pending", "sending")))
    )
    db.session.commit()
    telemetry.MAIL_PENDING.set(pending)


def make_all_due():
    """Bring every pending mail's next attempt forward to now (`mail send-pending`)."""
    db.session.execute(
        outbox.update().where(outbox.c.state == "pending").values(next_attempt_at=utcnow())
    )
    db.session.commit()


def purge(cutoff):
    """Delete outbox rows sent before `cutoff`, or queued before it and given up; return how many.

    Their bodies went when they were sent or given up; what is left is a
    record for operators, kept as long as ended sessions are.
    """
    done = sa.or_(
        sa.and_(outbox.c.state == "sent", outbox.c.sent_at < cutoff),
        sa.and_(outbox.c.state == "given_up", outbox.c.created_at < cutoff),
    )
    return db.session.execute(outbox.delete().where(done)).rowcount


def release(claim):
    """Give back the rows of a claim not sent yet, for another relay to take at once."""
    db.session.execute(
        outbox.update()
        .where(outbox.c.claim == claim, outbox.c.state == "sending")
        .values(state="pending", claim=None, claimed_until=None)
    )
    db.session.commit()


def send_pending(stopping=None):
    """Deliver every mail due now; return how many were sent, retried and given up.

    A relay that is `stopping` (an Event: its worker is exiting) finishes the
    mail in hand and gives the rest of its claim back.
    """
    tally = Counter()
    while not (stopping and stopping.is_set()):
        claim = secrets.token_hex(16)
        rows = claim_due(claim)
        if not rows:
            break
        for row in rows:
            if stopping and stopping.is_set():
                release(claim)
                break
            tally[process(row, claim)] += 1
    count_pending()
    return tally


class Relay:
    """A process's relay thread, started on demand and woken by commits."""

    def __init__(self, app):
        self.app, self.lock = app, threading.Lock()
        self.thread, self.pid = None, None
        self.wakeup, self.stopping = threading.Event(), threading.Event()

    def running(self):
        """Tell whether this process has a live relay thread."""
        return self.pid == os.getpid() and self.thread is not None and self.thread.is_alive()

    def start(self):
        """Start this process's relay thread unless it runs already."""
        with self.lock:
            if self.running():
                return
            # Events made before a fork belong to the parent: start afresh.
            self.wakeup, self.stopping = threading.Event(), threading.Event()
            self.pid = os.getpid()
            self.thread = threading.Thread(target=self.run, name="authsvc-mail-relay", daemon=True)
            self.thread.start()

    def wake(self):
        """Have the relay look at the outbox now, starting it if this process has none."""
        self.start()
        self.wakeup.set()

    def stop(self, timeout=5):
        """Ask the thread to finish its current mail and stop; wait a little for it."""
        if self.running():
            self.stopping.set()
            self.wakeup.set()
            self.thread.join(timeout)

    def run(self):
        """Deliver what is due, then sleep until woken or the poll interval passes."""
        while not self.stopping.is_set():
            self.wakeup.clear()
            self.deliver_due()
            self.wakeup.wait(self.app.config["MAIL_POLL_INTERVAL"])

    def deliver_due(self):
        """Run one pass of send_pending(); log any failure in one line and carry on."""
        with self.app.app_context():
            g.audit_source = "relay"
            try:
                send_pending(self.stopping)
            except Exception as error:
                roll_back()  # with the server gone, a plain rollback would raise and end the thread
                log.error("mail relay: %s; trying again later", describe_failure(error))
            finally:
                db.session.remove()


def describe_failure(error):
    """Describe a failure of the relay itself (the database, say) in one line."""
    cause = getattr(error, "orig", None) or error
    first_line = (str(cause).strip().splitlines() or [""])[0][:200]
    return f"{type(cause).__name__}: {first_line}" if first_line else type(cause).__name__


def relay_of(app):
    """Return an app's relay, made on first use."""
    relay = app.extensions.get("authsvc-relay")
    if relay is None:
        relay = app.extensions["authsvc-relay"] = Relay(app)
    return relay


def start(app):
    """Start the relay of this process (gunicorn's post_fork calls this)."""
    if app.config["MAIL_RELAY"] and app.config["MAIL_SERVER"] is not None:
        relay_of(app).start()


@sa.event.listens_for(db.session, "after_commit")
def _wake_after_commit(session):
    """Wake the relay once a transaction that queued mail is committed."""
    if session.info.pop(mail.QUEUED, False):
        app = current_app._get_current_object()
        if app.config["MAIL_RELAY"]:
            relay_of(app).wake()


@sa.event.listens_for(db.session, "after_soft_rollback")
def _forget_rolled_back_mail(session, previous_transaction):
    """Forget mail queued in a transaction that was rolled back."""
    session.info.pop(mail.QUEUED, None)

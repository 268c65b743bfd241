"""First start: create the first account and its administrator from the settings.

The administrator's password is read from ``bootstrap_password_file`` or generated; a generated
password is returned once (``sanctum manager serve`` prints it) and never stored in clear or
logged. There is no default password. Two replicas starting together cannot both bootstrap: the
unique account name makes the loser's transaction fail, and it then does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select

from sanctum.errors import ConflictError, UsageError
from sanctum.manager.credentials import check_password_strength, hash_password, new_password
from sanctum.manager.models import Account, Membership, Role, User, UserStatus
from sanctum.manager.runtime import Runtime
from sanctum.manager.services.audit import record

__all__ = ["BootstrapResult", "bootstrap"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What the first start created; ``generated_password`` is set only when generated."""

    account_id: str
    email: str
    generated_password: str | None


def _initial_password(runtime: Runtime) -> tuple[str, bool]:
    settings = runtime.settings
    if settings.bootstrap_password_file is not None:
        try:
            password = settings.bootstrap_password_file.read_text().strip()
        except OSError as error:
            raise UsageError(
                f"cannot read {settings.bootstrap_password_file}", code="bootstrap.password_file"
            ) from error
        check_password_strength(password)
        return password, False
    if settings.bootstrap_password is not None:
        password = settings.bootstrap_password.get_secret_value()
        check_password_strength(password)
        return password, False
    return new_password(), True


def bootstrap(runtime: Runtime) -> BootstrapResult | None:
    """Create the first account and administrator if the database has no user yet.

    Raises:
        UsageError: The password file is unreadable or the password weak.
    """
    settings = runtime.settings
    now = runtime.clock.now()
    with runtime.db.transaction() as session:
        if session.scalar(select(func.count()).select_from(User)):
            return None
    password, generated = _initial_password(runtime)
    try:
        with runtime.db.transaction() as session:
            if session.scalar(select(func.count()).select_from(User)):
                return None
            account = Account(
                name=settings.bootstrap_account_name,
                quorum=1,
                allow_self_approval=False,
                created_at=now,
            )
            user = User(
                email=settings.bootstrap_admin_email,
                name=settings.bootstrap_admin_name,
                status=UserStatus.active,
                password_hash=hash_password(password, runtime.hasher),
                created_at=now,
                updated_at=now,
            )
            session.add_all([account, user])
            session.flush()
            session.add(
                Membership(
                    user_id=user.id,
                    account_id=account.id,
                    role=Role.administrator,
                    created_at=now,
                )
            )
            record(
                session,
                now=now,
                action="system.bootstrapped",
                account_id=account.id,
                actor_type="system",
                actor_name="sanctum-manager",
                target_type="user",
                target_id=user.id,
                details={"email": user.email, "password_generated": generated},
            )
            result = BootstrapResult(
                account_id=account.id,
                email=user.email,
                generated_password=password if generated else None,
            )
    except ConflictError:
        _log.info("another manager process bootstrapped the database first")
        return None
    _log.warning(
        "bootstrapped account %r with administrator %s",
        settings.bootstrap_account_name,
        result.email,
    )
    return result

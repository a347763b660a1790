"""``wrap(client)`` and ``client(service)``: put outlast inside one botocore client.

:func:`wrap` changes the client it is given, and nothing else:

1. its HTTP session dials through outlast (:mod:`outlast.aws._session`);
2. botocore's retry handler is unregistered from it and each ``make_request`` goes
   through an :class:`outlast.Policy` keyed by endpoint (:mod:`outlast.aws._retries`);
3. with fallbacks, allow-listed operations fail over (:mod:`outlast.aws._failover`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from typing import Any, Final, TypeVar

from outlast._config import Settings
from outlast._dial import DEFAULT_EJECT_FOR, Outliers
from outlast._events import Emitter, Listener
from outlast._exceptions import ConfigError
from outlast.aws._events import LOGGER
from outlast.aws._failover import Failover, Fallback, allow_list
from outlast.aws._retries import (
    Retrier,
    default_policy,
    disable_botocore_retries,
    explicit_max_attempts,
    outlast_environ,
    with_aws_classifiers,
)
from outlast.aws._session import Dialer, install
from outlast.dns import Resolver
from outlast.policy import Policy

__all__ = ["Wrapped", "client", "wrap", "wrapped"]

_MARK: Final = "_outlast_wrapped"
# The resolver of the latest OUTLAST_* environment (see outlast_environ): a changed
# environment builds a new one; the old one closes when its last client is gone.
_shared_resolver: tuple[tuple[tuple[str, str], ...], Resolver] | None = None
_resolver_lock = threading.Lock()


@dataclasses.dataclass(frozen=True, slots=True)
class Wrapped:
    """What :func:`wrap` installed on a client (for introspection and tests).

    Added in 0.1.0.
    """

    resolver: Resolver
    policy: Policy
    fallbacks: tuple[Fallback, ...]


def _default_resolver() -> Resolver:
    """One ``Resolver.from_env()`` per ``OUTLAST_*`` environment for wrapped clients given none.

    Clients wrapped under the same ``OUTLAST_*`` values share one resolver (one DNS
    cache); once a variable changes, newly wrapped clients get a resolver built from
    the new values.
    """
    global _shared_resolver
    environ = outlast_environ()
    key = tuple(sorted(environ.items()))
    with _resolver_lock:
        if _shared_resolver is None or _shared_resolver[0] != key:
            _shared_resolver = (key, Resolver.from_env(environ))
        return _shared_resolver[1]


def wrapped(client: Any) -> Wrapped | None:
    """What :func:`wrap` installed on ``client``; None if it was not wrapped (or disabled).

    Added in 0.1.0.
    """
    state = getattr(client, "__dict__", {}).get(_MARK)
    return state if isinstance(state, Wrapped) else None


def _check_client(client: Any) -> None:
    meta = getattr(client, "meta", None)
    if (
        getattr(meta, "service_model", None) is None
        or getattr(client, "_endpoint", None) is None
        or not callable(getattr(client, "_make_api_call", None))
    ):
        raise ConfigError("client", client, "a boto3/botocore client (session.client(...))")
    if wrapped(client) is not None:
        raise ConfigError("client", client, "a client that outlast.aws.wrap has not wrapped yet")


def _region_builder(primary: Any, region: str, wrap_options: dict[str, Any]) -> Any:
    """A callable making a client like ``primary`` in ``region`` (wrapped, no fallbacks)."""

    def build() -> Any:
        import botocore.session

        meta = primary.meta
        credentials = primary._request_signer._credentials
        keys: dict[str, Any] = {}
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            keys = {
                "aws_access_key_id": frozen.access_key,
                "aws_secret_access_key": frozen.secret_key,
                "aws_session_token": frozen.token,
            }
        made = botocore.session.Session().create_client(
            meta.service_model.service_name,
            region_name=region,
            config=meta.config,
            verify=primary._endpoint.http_session._verify,
            **keys,
        )
        if credentials is not None:
            # Share the primary's credentials object, so that refreshes reach both.
            made._request_signer._credentials = credentials
        return wrap(made, **wrap_options)

    return build


#: The type of the client given to :func:`wrap`, kept for the caller (boto3-stubs types).
ClientT = TypeVar("ClientT", bound=Any)


def wrap(
    client: ClientT,
    *,
    resolver: Resolver | None = None,
    policy: Policy | None = None,
    fallback_regions: Iterable[str] = (),
    fallback_clients: Iterable[Any] = (),
    failover_operations: Iterable[str] | None = None,
    listeners: Iterable[Listener] = (),
    eject_for: float = DEFAULT_EJECT_FOR,
) -> ClientT:
    """Instrument a boto3/botocore client in place and return it. Any service.

    The client's static type is kept (``wrap(boto3.client("dynamodb"))`` is still a
    ``DynamoDBClient`` under boto3-stubs).

    - ``resolver``: resolves the endpoint's name (default: one shared
      ``Resolver.from_env()``); the client's addresses are dialled healthy-first, and an
      address that refused or timed out is tried last for ``eject_for`` seconds.
    - ``policy``: retries, retry budget and breaker, one breaker and budget per endpoint
      (``service:region:host``). Default: one shared ``Policy`` from ``OUTLAST_*`` with
      :func:`classify_error` / :func:`classify_result`, attempts capped by a botocore
      ``max_attempts`` the user set explicitly. botocore's own retries are turned off on
      the client. A policy you pass keeps its retry, budget and breakers; a classifier
      it leaves at ``Policy``'s default (``classify_error=outlast.policy.retry_all``,
      ``classify_result=None``) is replaced by outlast.aws's, one you set is kept.
    - ``fallback_clients`` then ``fallback_regions`` (region names: a client with the
      same configuration and credentials is built there on first use, at botocore's
      standard endpoint for that region): where allow-listed operations go when the
      primary cannot be reached.
    - ``failover_operations``: operation names (``GetItem`` or ``get_item``) that may
      fail over; default: read-only ones (see :func:`read_only`).
    - ``listeners`` receive the client's ``aws.*`` and address events.

    With ``OUTLAST_DISABLE=1`` the client is returned untouched.

    Added in 0.1.0.
    """
    _check_client(client)
    if resolver is not None and not isinstance(resolver, Resolver):
        raise ConfigError("resolver", resolver, "an outlast.Resolver or None")
    if policy is not None and not isinstance(policy, Policy):
        raise ConfigError("policy", policy, "an outlast.Policy or None")
    regions = [fallback_regions] if isinstance(fallback_regions, str) else list(fallback_regions)
    for region in regions:
        if not isinstance(region, str) or not region:
            raise ConfigError("fallback_regions", region, "region names such as 'us-west-2'")
    others = list(fallback_clients)
    for other in others:
        if getattr(getattr(other, "meta", None), "service_model", None) is None:
            raise ConfigError("fallback_clients", other, "boto3/botocore clients")
        if other is client:
            raise ConfigError("fallback_clients", other, "clients other than the one wrapped")
        service = client.meta.service_model.service_name
        if other.meta.service_model.service_name != service:
            raise ConfigError("fallback_clients", other, f"clients of the same service ({service})")
    allowed = allow_list(client, failover_operations)
    listeners = tuple(listeners)
    if Settings.from_env().disable:
        return client

    chosen_resolver = resolver if resolver is not None else _default_resolver()
    chosen_policy = (
        with_aws_classifiers(policy)
        if policy is not None
        else default_policy(explicit_max_attempts(client))
    )
    emitter = Emitter(LOGGER, listeners)
    install(
        client._endpoint.http_session,
        Dialer(chosen_resolver, Outliers(eject_for=eject_for), emitter),
    )
    disable_botocore_retries(client)
    client._endpoint.make_request = Retrier(client, chosen_policy).make_request

    fallbacks = [
        Fallback(client=other, label=f"client {index + 1}") for index, other in enumerate(others)
    ]
    options = {
        "resolver": chosen_resolver,
        "policy": policy,
        "listeners": listeners,
        "eject_for": eject_for,
    }
    fallbacks += [
        Fallback(build=_region_builder(client, region, options), label=f"region {region}")
        for region in regions
    ]
    if fallbacks:
        client._make_api_call = Failover(client, fallbacks, allowed, emitter).make_api_call
    setattr(client, _MARK, Wrapped(chosen_resolver, chosen_policy, tuple(fallbacks)))
    return client


def client(
    service_name: str,
    *,
    resolver: Resolver | None = None,
    policy: Policy | None = None,
    fallback_regions: Iterable[str] = (),
    fallback_clients: Iterable[Any] = (),
    failover_operations: Iterable[str] | None = None,
    listeners: Iterable[Listener] = (),
    eject_for: float = DEFAULT_EJECT_FOR,
    session: Any = None,
    **kwargs: Any,
) -> Any:
    """``boto3.client(service_name, **kwargs)`` (or ``session.client``), wrapped by :func:`wrap`.

    Added in 0.1.0.
    """
    if session is None:
        import boto3

        made = boto3.client(service_name, **kwargs)
    else:
        made = session.client(service_name, **kwargs)
    return wrap(
        made,
        resolver=resolver,
        policy=policy,
        fallback_regions=fallback_regions,
        fallback_clients=fallback_clients,
        failover_operations=failover_operations,
        listeners=listeners,
        eject_for=eject_for,
    )

"""``wrap(client)`` and ``client(service)``: put outlast inside one botocore client.

:func:`wrap` changes the client it is given, and nothing else:

1. its HTTP session dials through outlast (:mod:`outlast.aws._session`);
2. botocore's retry handler is unregistered from it and each ``make_request`` goes
   through an :class:`outlast.Policy` keyed by endpoint (:mod:`outlast.aws._retries`);
3. with fallbacks, allow-listed operations fail over (:mod:`outlast.aws._failover`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from outlast import _root
from outlast._config import Settings
from outlast._dial import DEFAULT_EJECT_FOR, Outliers
from outlast._events import Emitter, Listener
from outlast._exceptions import ConfigError
from outlast.aws._events import LOGGER
from outlast.aws._failover import Failover, Fallback, allow_list
from outlast.aws._handlers import carry_handlers
from outlast.aws._retries import (
    Retrier,
    default_policy,
    disable_botocore_retries,
    explicit_max_attempts,
    with_aws_classifiers,
)
from outlast.aws._session import Dialer, install
from outlast.dns import Resolver
from outlast.policy import Policy

if TYPE_CHECKING:
    from outlast.chaos._urllib3 import Injector

__all__ = ["Wrapped", "client", "wrap", "wrapped"]

_MARK: Final = "_outlast_wrapped"


@dataclasses.dataclass(frozen=True, slots=True)
class Wrapped:
    """What :func:`wrap` installed on a client (for introspection and tests).

    Added in 0.1.0.
    """

    resolver: Resolver
    policy: Policy
    fallbacks: tuple[Fallback, ...]


def _default_resolver() -> Resolver:
    """The process's resolver for the ``OUTLAST_*`` configuration (:mod:`outlast._root`).

    Wrapped clients and httpx clients given no resolver share it (one DNS cache, one
    cache-file writer); once a variable changes, newly wrapped clients get a resolver
    built from the new values.
    """
    return _root.shared_resolver()


def _chaos(settings: Settings, listeners: tuple[Listener, ...]) -> Injector | None:
    """``OUTLAST_CHAOS``'s connect and HTTP faults for this client's urllib3 classes."""
    return _root.urllib3_chaos(settings, listeners)  # None, and nothing imported, when off


def is_aio(client: Any) -> bool:
    """Whether ``client`` is an aiobotocore client (without importing aiobotocore)."""
    return any(klass.__module__.startswith("aiobotocore.") for klass in type(client).__mro__)


def _wrap_aio(
    client: Any,
    resolver: Resolver,
    policy: Policy,
    eject_for: float,
    settings: Settings,
    listeners: tuple[Listener, ...],
) -> None:
    """DNS, retries and chaos for an aiobotocore client (:mod:`outlast.aws._aio`)."""
    from outlast.aws._aio import AsyncRetrier, install_aio

    install_aio(client, resolver, Outliers(eject_for=eject_for))
    if settings.chaos is not None:  # nothing imported without OUTLAST_CHAOS
        chaos = _root.aiobotocore_chaos(settings, listeners)
        if chaos is not None:
            session = client._endpoint.http_session
            timeout = getattr(session, "_timeout", None)
            session.send = chaos.wrap(
                session.send,
                connect=getattr(timeout, "sock_connect", None),
                read=getattr(timeout, "sock_read", None),
            )
    disable_botocore_retries(client)
    client._endpoint.make_request = AsyncRetrier(client, policy).make_request


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
        carry_handlers(primary, made)
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
    failover_consistent_reads: bool = False,
    listeners: Iterable[Listener] = (),
    eject_for: float = DEFAULT_EJECT_FOR,
) -> ClientT:
    """Instrument a boto3/botocore client in place and return it. Any service.

    An aiobotocore client (extra ``outlast[aiobotocore]``) gets the same, awaited (see
    :mod:`outlast.aws._aio`): wrap it before its first request; ``fallback_regions``
    is a ``ConfigError`` for it.

    The client's static type is kept (``wrap(boto3.client("dynamodb"))`` is still a
    ``DynamoDBClient`` under boto3-stubs).

    - ``resolver``: resolves the endpoint's name (default: one shared
      ``Resolver.from_env()``); the client's addresses are dialled healthy-first, and an
      address that refused or timed out is tried last for ``eject_for`` seconds.
    - ``policy``: retries, retry budget and breaker, one breaker and budget per endpoint
      (``service:region:scheme://host:port``, never a bucket's host). Default: one
      shared ``Policy`` from ``OUTLAST_*`` with
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
      fail over; default: the per-service allow-list of safe reads
      (:data:`DEFAULT_FAILOVER_OPERATIONS`, see :func:`read_only`). A fallback's
      "not found" raises the primary's connection error; a body that cannot be
      rewound never fails over; a fallback never fails over again.
    - ``failover_consistent_reads``: strongly consistent DynamoDB reads
      (``ConsistentRead=True``, ``TransactGetItems``) stay on the primary unless True;
      an answer from a fallback says where it came from in
      ``ResponseMetadata["OutlastFailover"]``.
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
    aio = is_aio(client)
    for other in others:
        if is_aio(other) != aio:
            expected = "aiobotocore clients" if aio else "boto3/botocore clients, not aiobotocore"
            raise ConfigError("fallback_clients", other, expected)
    if aio and regions:
        raise ConfigError(
            "fallback_regions",
            regions,
            "no regions for an aiobotocore client: pass fallback_clients you enter and close",
        )
    allowed = allow_list(client, failover_operations)
    if not isinstance(failover_consistent_reads, bool):
        raise ConfigError("failover_consistent_reads", failover_consistent_reads, "True or False")
    listeners = tuple(listeners)
    settings = Settings.from_env()
    if settings.disable:
        return client

    chosen_resolver = resolver if resolver is not None else _default_resolver()
    chosen_policy = (
        with_aws_classifiers(policy)
        if policy is not None
        else default_policy(explicit_max_attempts(client))
    )
    emitter = Emitter(LOGGER, listeners)
    if aio:
        _wrap_aio(client, chosen_resolver, chosen_policy, eject_for, settings, listeners)
    else:
        install(
            client._endpoint.http_session,
            Dialer(
                chosen_resolver, Outliers(eject_for=eject_for), emitter, _chaos(settings, listeners)
            ),
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
        kind = Failover
        if aio:
            from outlast.aws._aio import AsyncFailover

            kind = AsyncFailover
        client._make_api_call = kind(
            client, fallbacks, allowed, emitter, consistent_reads=failover_consistent_reads
        ).make_api_call
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
    failover_consistent_reads: bool = False,
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
        failover_consistent_reads=failover_consistent_reads,
        listeners=listeners,
        eject_for=eject_for,
    )

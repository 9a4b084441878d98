"""The gateway's error interceptor: every failure leaves the server as a ``google.rpc.Status``.

Handlers (and the core under them) raise :class:`server.errors.ServiceError` subclasses and never
touch the ``ServicerContext`` for errors. :class:`ErrorInterceptor` catches what a handler raises
and aborts the call with :func:`server.errors.to_grpc_status`: the error's code, message, an
``ErrorInfo`` and, where present, ``BadRequest`` field violations and ``RetryInfo`` in the
``grpc-status-details-bin`` trailer. Anything that is not a ``ServiceError`` becomes ``INTERNAL``
with a generic message and an incident id; its traceback is logged under that id.

Interceptor order (:func:`server_interceptors`): observability first (outermost, so it sees the
final status code and the whole duration), then this one (innermost, next to the handlers). Add
further cross-cutting concerns (authentication, rate limits) between the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from server.errors import to_grpc_status

_Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


async def _abort(context: grpc.aio.ServicerContext, error: BaseException) -> None:
    """Abort the call with ``error``'s status (raises ``grpc.aio.AbortError``, as ``abort`` does)."""
    await context.abort_with_status(to_grpc_status(error))


def _passes_through(error: BaseException) -> bool:
    """Errors that are not ours to translate: an abort already issued, cancellation, exit."""
    return isinstance(error, grpc.aio.AbortError | asyncio.CancelledError) or not isinstance(error, Exception)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions raised by unary-unary and unary-stream handlers to ``google.rpc.Status``.

    A handler that calls ``context.abort`` itself keeps its status; cancellation propagates.
    For a streaming handler, messages already yielded stay delivered and the stream ends with the
    error status.
    """

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await inner_unary(request, context)
                except BaseException as error:
                    if _passes_through(error):
                        raise
                    await _abort(context, error)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    result = inner_stream(request, context)
                    if hasattr(result, "__aiter__"):
                        async for message in result:
                            yield message
                    else:  # a coroutine that writes with context.write()
                        await result
                except BaseException as error:
                    if _passes_through(error):
                        raise
                    await _abort(context, error)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # Client-streaming methods: the API has none; leave them untouched rather than half-wrapped.
        return handler


def server_interceptors(
    observability: grpc.aio.ServerInterceptor | None = None,
) -> Sequence[grpc.aio.ServerInterceptor]:
    """The gateway's interceptor chain, outermost first: observability (if given), then errors."""
    chain: list[grpc.aio.ServerInterceptor] = []
    if observability is not None:
        chain.append(observability)
    chain.append(ErrorInterceptor())
    return chain

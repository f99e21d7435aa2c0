"""In-graph validation of serving requests: refuse a bad request, name the problem.

Every serving input has an unknown-rank spec and is checked in the graph with
`tf.debugging.Assert`s that run before any other op touches it, so a
malformed request fails with `InvalidArgument` and a message naming the
problem, rather than somewhere inside the encoder or in the client library.
"""

from __future__ import annotations

import tensorflow as tf


# ----------------------------------------------------------------------
# In-graph request validation.
# ----------------------------------------------------------------------
def after_checks(checks, *tensors):
    """`tensors`, made to depend on `checks` so a bad request fails on them."""
    with tf.control_dependencies(checks):
        out = tuple(tf.identity(t) for t in tensors)
    return out if len(out) > 1 else out[0]


def validate(rules, *tensors, after=()):
    """Asserts `rules` (`(ok, message_parts)`), then returns `tensors`.

    Only the first failing rule fires (each rule is vacuous once an earlier
    one failed), and the asserts only run once the tensors in `after` (earlier
    validated inputs) are computed. So the error names the root problem
    whatever order the executor runs ops in, and no rule evaluates an op that
    could itself fail on a malformed input.
    """
    checks = []
    with tf.control_dependencies(list(after)):
        previous = tf.constant(True)
        for ok, message in rules:
            checks.append(
                tf.debugging.Assert(
                    tf.logical_or(ok, tf.logical_not(previous)), message, summarize=16
                )
            )
            previous = tf.logical_and(previous, ok)
    return after_checks(checks, *tensors)


def padded_shape(tensor, rank: int):
    """`tf.shape(tensor)` padded with -1 to at least `rank` entries (never fails)."""
    return tf.concat([tf.shape(tensor), tf.fill([rank], -1)], axis=0)


def static_shape(tensor, shape):
    """`tensor` with static `shape` (-1: any), for a tensor already validated.

    A reshape rather than `tf.ensure_shape`: Grappler's shape inference
    unifies an EnsureShape's input with its declared shape and would then
    constant-fold the validation's own `tf.rank(input)` to the expected rank,
    silencing the rank check. A reshape's output shape stands alone.
    """
    return tf.reshape(tensor, shape)


def check_strings(values, name: str, batch=None):
    """Validates a `[B]` string input (B >= 1, matching `batch` if given)."""
    shape = padded_shape(values, 1)
    rules = [
        (
            tf.equal(tf.rank(values), 1),
            [f"`{name}` must be a 1-D string tensor [batch]; got shape",
             tf.shape(values)],
        ),
        (
            shape[0] > 0,
            [f"`{name}` is empty: a request needs at least one example"],
        ),
    ]
    if batch is not None:
        rules.append(
            (
                tf.equal(shape[0], batch),
                [f"`{name}` and `text` batch sizes differ:", shape[0], "vs", batch],
            )
        )
    after = () if batch is None else (batch,)
    return static_shape(validate(rules, values, after=after), [-1])

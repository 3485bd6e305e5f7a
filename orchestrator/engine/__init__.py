"""The durable execution engine. It knows nothing of views; views and commands call
``runs`` (start, cancel, redrive, decide an effect) and ``workflows`` (publish, import,
export).

Definitions: ``schema`` (JSON Schema) -> ``validator`` (findings) -> ``definition`` (typed
objects); ``guards`` evaluates choice conditions; ``retry`` is the retry policy.

Execution, in the order a step lives through it:
``scheduling`` (entering a state) and ``attempts`` (creating one) -> ``dispatch`` (enqueue
on commit) -> ``executor`` (the RQ job: claim, run the handler with a ``context``,
checkpoint, go on inline) -> ``transitions`` (every attempt status change, compare-and-set
and fenced) and ``runstate`` (run endings, saga compensation). ``effects`` is the ledger
behind ``ctx.effect``; ``lease`` keeps a running attempt's lease; ``sweeper`` recovers;
``reconnect`` retries engine writes over a dropped connection; ``eventlog`` appends events.
"""

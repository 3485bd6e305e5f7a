"""The durable execution engine. It knows nothing of views; views and commands call
``runs`` (start, cancel, redrive, decide an effect) and ``workflows`` (publish, import,
export), and read a run's history through ``history``.

Definitions: ``schema`` (JSON Schema) -> ``validator`` (findings, ``parse_definition``) ->
``definition`` (typed objects); ``guards`` evaluates choice conditions; ``retry`` is the
retry policy; ``reducers`` merge the outputs of parallel branches.

Execution, in the order a step lives through it:
``scheduling`` (a line of execution entering a state; forks and joins) and ``attempts``
(creating one) -> ``dispatch`` (enqueue on commit) -> ``executor`` (the RQ job: claim, run
the handler with a ``context``, checkpoint, go on inline) -> ``transitions`` (every attempt
status change, compare-and-set and fenced) and ``runstate`` (every run status change: pause,
resume, succeed, fail with saga compensation, cancel, redrive). ``lines`` holds a branch's
context and liveness. ``effects`` is ``ctx.effect`` and ``ledger`` every effect status change,
fenced by the owning attempt; ``storable`` checks what a checkpoint can hold.

Keeping it durable: ``lease`` keeps a running attempt's lease; ``sweeper`` recovers (with
``workers``, the live workers' queues); ``clock`` is the database's time; ``reconnect``
retries engine writes over a dropped connection; ``eventlog`` appends events and
``signals`` tells subscribers once they are committed.
"""

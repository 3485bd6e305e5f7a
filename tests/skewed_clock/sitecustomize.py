"""Put on PYTHONPATH of one process to skew its wall clock by RATCHET_TEST_CLOCK_SKEW seconds.

A worker on a machine whose clock is off: time.time() and datetime.now() are shifted and keep
ticking (time-machine), while monotonic time, sleeps and timed waits stay real, as they are on
such a machine. Nothing in the product reads this: it is the machine that is wrong.
"""

import os

_skew = os.environ.get("RATCHET_TEST_CLOCK_SKEW")
if _skew:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_skew), tick=True).start()

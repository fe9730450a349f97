import asyncio

from tripline_client.backoff import Backoff
from tripline_client.connectivity import Connectivity


class World:
    """A gateway that is up or down, and a record of the probe loop's waits."""

    def __init__(self) -> None:
        self.up = False
        self.probes = 0
        self.sleeps: list[float] = []
        self.slept = asyncio.Event()

    async def probe(self) -> bool:
        self.probes += 1
        return self.up

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.slept.set()
        await asyncio.sleep(3600)


def connectivity(world: World) -> Connectivity:
    return Connectivity(
        world.probe,
        backoff=Backoff(base_s=1, cap_s=8),
        background_cap_s=120,
        sleep=world.sleep,
        rand=lambda: 0.999,
    )


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_no_probe_runs_while_the_gateway_answers() -> None:
    world = World()
    monitor = connectivity(world)
    task = asyncio.create_task(monitor.run())
    await settle()
    assert world.probes == 0
    assert monitor.online
    task.cancel()


async def test_going_offline_probes_with_growing_waits_until_back() -> None:
    world = World()
    monitor = connectivity(world)
    changes: list[bool] = []
    monitor.on_change(changes.append)
    task = asyncio.create_task(monitor.run())
    monitor.observe(False)
    await settle()
    assert world.probes == 1
    assert not monitor.online
    assert round(world.sleeps[0]) == 1
    world.up = True
    monitor.network_changed(True)  # the host app's hook cuts the wait short
    await asyncio.wait_for(monitor.wait_online(), 5)
    assert changes == [False, True]
    assert world.probes == 2
    task.cancel()


async def test_waits_grow_to_the_cap_and_stretch_in_background() -> None:
    world = World()
    monitor = connectivity(world)
    monitor.observe(False)
    task = asyncio.create_task(monitor.run())
    for _ in range(6):
        await asyncio.wait_for(world.slept.wait(), 5)
        world.slept.clear()
        monitor.network_changed(True)
        await settle()
    assert max(world.sleeps) <= 8
    assert world.sleeps[-1] > 7
    monitor.set_background(True)
    for _ in range(9):
        await asyncio.wait_for(world.slept.wait(), 5)
        world.slept.clear()
        monitor.network_changed(True)
        await settle()
    assert 8 < world.sleeps[-1] <= 120
    task.cancel()


async def test_the_host_apps_network_loss_marks_offline_at_once() -> None:
    world = World()
    monitor = connectivity(world)
    monitor.network_changed(False)
    assert not monitor.online
    waiter = asyncio.create_task(monitor.wait_online())
    await settle()
    assert not waiter.done()
    monitor.observe(True)
    await asyncio.wait_for(waiter, 5)


async def test_a_failing_listener_does_not_stop_the_others() -> None:
    world = World()
    monitor = connectivity(world)
    heard: list[bool] = []

    def broken(online: bool) -> None:
        raise RuntimeError("listener bug")

    monitor.on_change(broken)
    monitor.on_change(heard.append)
    monitor.observe(False)
    monitor.observe(False)
    monitor.observe(True)
    assert heard == [False, True]

"""Helpers shared by the deployment tests (ROS-free and launch tests): source demos and a tiny trained agent."""

from __future__ import annotations

from pathlib import Path

TASK = "coffee"
TINY_HSP = {
    "hidden_dim": 32, "encoder_layers": 1, "head_layers": 1, "epochs": 1, "batch_size": 64,
    "val_fraction": 0.5, "num_threads": 1,
}


def source_demos(out: Path, num: int = 2) -> Path:
    """``num`` scripted Coffee demos (seeds from 0) written to ``out``."""
    from reinforcegen_ros.demos.collect import collect

    report = collect(TASK, num, out, seed=0, progress=False)
    assert report.successes == num, f"scripted demos failed: {report}"
    return out


def tiny_agent(dataset: Path, out: Path) -> Path:
    """A one-epoch privileged hybrid skill policy for Coffee (it runs; it is not meant to succeed)."""
    from reinforcegen_ros.training.loop import train_hsp

    train_hsp(TASK, dataset, out, "privileged", TINY_HSP, progress=False)
    return out


# ---------------------------------------------------------------------- a stand-in for rclpy (node wiring tests)
class FakeRos:
    """Just enough of rclpy, its message packages and rosidl_runtime_py for the nodes in ``reinforcegen_ros.nodes``
    to be constructed and driven in one process, without ROS.

    Messages are classes with ROS defaults built from the rosbags typestore (the same definitions). Publishing
    queues a message on a bus; :meth:`pump` delivers queued messages to subscribers in order, :meth:`fire` runs
    a node's timers; services are called synchronously; an action goal runs its execute callback in a thread.
    Not ROS: no QoS, no executor threads, no parameter services. It checks that the nodes' wiring (topics,
    message fields, callbacks, the deployment cores they call) holds together; ``test/ros`` checks the real thing.
    """

    def __init__(self, params: dict[str, dict] | None = None):
        import types

        from reinforcegen_ros import messages as M

        self.store = M.make_typestore()
        self.params = params or {}
        self.queue: list = []
        self.subs: dict[str, list] = {}
        self.services: dict[str, tuple] = {}
        self.published: dict[str, list] = {}
        self.nodes: list = []
        self.now_ns = 0
        self.logs: list[tuple[str, str, str]] = []
        self.modules = {}
        self._classes: dict[str, type] = {}
        fake = self

        def module(name, **attrs):
            mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
            self.modules[name] = mod
            return mod

        class Param:
            def __init__(self, value):
                self.value = value

        class Logger:
            def __init__(self, node):
                self.node = node

            def _log(self, level, text):
                fake.logs.append((self.node, level, str(text)))

            def info(self, text):
                self._log("info", text)

            def warning(self, text):
                self._log("warning", text)

            def error(self, text):
                self._log("error", text)

            def fatal(self, text):
                self._log("fatal", text)

        class Time:
            def __init__(self, ns):
                self.nanoseconds = ns

        class NodeClock:
            def now(self):
                return Time(fake.now_ns)

        class Timer:
            def __init__(self, period, callback):
                self.period, self.callback, self.cancelled = period, callback, False

            def cancel(self):
                self.cancelled = True

            def reset(self):  # rclpy: restarts the period, re-arming a cancelled timer
                self.cancelled = False

        class Publisher:
            def __init__(self, topic):
                self.topic = topic

            def publish(self, msg):
                fake.published.setdefault(self.topic, []).append(msg)
                if self.topic == "/clock":
                    fake.now_ns = int(msg.clock.sec) * 10**9 + int(msg.clock.nanosec)
                fake.queue.append((self.topic, msg))

        class Future:
            def __init__(self, value):
                self.value = value

            def result(self):
                return self.value

            def done(self):
                return True

            def add_done_callback(self, cb):
                cb(self)

        class Client:
            def __init__(self, srv_type, name):
                self.srv_type, self.name = srv_type, name

            def service_is_ready(self):
                return self.name in fake.services

            def call_async(self, request):
                srv_type, callback = fake.services[self.name]
                return Future(callback(request, srv_type.Response()))

        class Node:
            def __init__(self, name):
                self._name, self._timers = name, []
                self._params = fake.params.get(name, {})
                fake.nodes.append(self)

            def get_name(self):
                return self._name

            def declare_parameter(self, name, default):
                return Param(self._params.get(name, default))

            def get_logger(self):
                return Logger(self._name)

            def get_clock(self):
                return NodeClock()

            def create_publisher(self, cls, topic, qos):
                return Publisher(topic)

            def create_subscription(self, cls, topic, callback, qos, **kw):
                fake.subs.setdefault(topic, []).append(callback)

            def create_timer(self, period, callback, callback_group=None, clock=None):
                timer = Timer(period, callback)
                self._timers.append(timer)
                return timer

            @property
            def timers(self):
                return list(self._timers)

            def _resolve(self, name):
                return f"/{self._name}/{name[2:]}" if name.startswith("~/") else name

            def create_service(self, srv_type, name, callback, **kw):
                fake.services[self._resolve(name)] = (srv_type, callback)

            def create_client(self, srv_type, name, **kw):
                return Client(srv_type, self._resolve(name))

            def destroy_node(self):
                self.destroyed = True

        class GoalHandle:
            def __init__(self, request):
                self.request, self.is_cancel_requested, self.feedback, self.state = request, False, [], "executing"

            def publish_feedback(self, fb):
                self.feedback.append(fb)

            def succeed(self):
                self.state = "succeeded"

            def abort(self):
                self.state = "aborted"

            def canceled(self):
                self.state = "canceled"

        class ActionServer:
            def __init__(self, node, action_type, name, execute_callback, goal_callback, cancel_callback=None, callback_group=None):
                self.type, self.name, self.execute, self.on_goal = action_type, name, execute_callback, goal_callback
                fake.services[name] = (action_type, self)

            def send_goal(self, goal):
                """(accepted, handle, thread collecting the result into handle.result)."""
                import threading

                if self.on_goal(goal) != GoalResponse.ACCEPT:
                    return False, None, None
                handle = GoalHandle(goal)
                thread = threading.Thread(target=lambda: setattr(handle, "result", self.execute(handle)), daemon=True)
                thread.start()
                return True, handle, thread

        class GoalResponse:
            ACCEPT, REJECT = "accept", "reject"

        class CancelResponse:
            ACCEPT, REJECT = "accept", "reject"

        self.ActionServer = ActionServer
        m = lambda name: self.message_class(name)  # noqa: E731
        module("rclpy", init=lambda args=None: None, ok=lambda: True, shutdown=lambda: None)
        module("rclpy.node", Node=Node)
        module("rclpy.qos", QoSProfile=lambda **kw: kw, ReliabilityPolicy=types.SimpleNamespace(RELIABLE="reliable"))
        module("rclpy.action", ActionServer=ActionServer, CancelResponse=CancelResponse, GoalResponse=GoalResponse)
        module("rclpy.callback_groups", MutuallyExclusiveCallbackGroup=object, ReentrantCallbackGroup=object)
        module("rclpy.clock", Clock=lambda **kw: None, ClockType=types.SimpleNamespace(STEADY_TIME="steady"))
        module("rclpy.executors", MultiThreadedExecutor=object, ExternalShutdownException=RuntimeError)
        for pkg, names in {"std_msgs": ("Bool", "Float64"), "geometry_msgs": ("TransformStamped",), "rosgraph_msgs": ("Clock",),
                           "tf2_msgs": ("TFMessage",), "visualization_msgs": ("Marker",), "nav_msgs": ("Path",),
                           "diagnostic_msgs": ("DiagnosticArray",)}.items():
            module(pkg)
            module(f"{pkg}.msg", **{n: m(f"{pkg}/msg/{n}") for n in names})

        class FollowJointTrajectory:
            class Result:
                SUCCESSFUL, GOAL_TOLERANCE_VIOLATED = 0, -5

        module("control_msgs")
        module("control_msgs.action", FollowJointTrajectory=FollowJointTrajectory)
        module("rosidl_runtime_py")
        module("rosidl_runtime_py.utilities", get_message=m, get_interface=self.interface, get_action=self.interface)

    def message_class(self, name: str) -> type:
        """A message class with ROS defaults (every field optional) for the type ``name``."""
        if name in self._classes:
            return self._classes[name]
        consts, fields = self.store.fielddefs[name]
        store, make = self.store, self.message_class

        def default(desc):
            kind, spec = desc
            if kind.name == "BASE":
                t = spec[0]
                return "" if t == "string" else False if t == "bool" else 0.0 if t.startswith("float") else 0
            if kind.name == "NAME":
                return make(spec)()
            if kind.name == "ARRAY":
                return [default(spec[0]) for _ in range(spec[1])]
            return []

        def __init__(self, **kw):
            for fname, desc in fields:
                setattr(self, fname, kw.pop(fname) if fname in kw else default(desc))
            if kw:
                raise TypeError(f"{name} has no fields {sorted(kw)}")

        cls = type(name.split("/")[-1], (), {"__init__": __init__, "_fields": [f for f, _ in fields], "__repr__": lambda s: f"<{name}>"})
        for cname, _, value in consts:
            setattr(cls, cname, value)
        del store
        self._classes[name] = cls
        return cls

    def interface(self, name: str):
        """A service (``Request``/``Response``) or action (``Goal``/``Result``/``Feedback``) type."""
        import types

        kind = name.split("/")[1]
        parts = ("Request", "Response") if kind == "srv" else ("Goal", "Result", "Feedback")
        return types.SimpleNamespace(**{p: self.message_class(f"{name}_{p}") for p in parts})

    def install(self, monkeypatch) -> None:
        """Put the fake modules in ``sys.modules`` (and forget previously imported node modules)."""
        import sys

        for name, mod in self.modules.items():
            monkeypatch.setitem(sys.modules, name, mod)
        for name in [n for n in sys.modules if n.startswith("reinforcegen_ros.nodes")]:
            monkeypatch.delitem(sys.modules, name)

    def pump(self, limit: int = 10_000) -> int:
        """Deliver queued messages (and those they cause) in order; returns how many."""
        n = 0
        while self.queue and n < limit:
            topic, msg = self.queue.pop(0)
            for callback in list(self.subs.get(topic, [])):
                callback(msg)
            n += 1
        return n

    def fire(self, node, name: str | None = None) -> None:
        """Run ``node``'s timers (those whose callback is named ``name``)."""
        for timer in node.timers:
            if not timer.cancelled and (name is None or timer.callback.__name__ == name):
                timer.callback()

    def warnings(self, node: str) -> list[str]:
        return [text for who, level, text in self.logs if who == node and level in ("warning", "error", "fatal")]

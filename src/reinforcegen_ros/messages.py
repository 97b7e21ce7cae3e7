"""ROS 2 interface of the stack without ROS: message types, topic names and conversions.

The ``reinforcegen_msgs`` interface package (``src/reinforcegen_msgs``) is parsed
from its ``.msg``/``.srv``/``.action`` files and registered into a `rosbags` typestore, so
bags can be written and read with real CDR serialization without a ROS install.

The conversion functions between numpy values (4x4 poses, (x, y, z, w)
quaternions, 7-D actions = 6 normalised delta pose + gripper) and messages work
on both rclpy and rosbags message classes: they take a :class:`MsgClasses`
namespace instead of importing either library. Build it with
:meth:`MsgClasses.from_typestore` (rosbags) or :meth:`MsgClasses.from_ros`
(rclpy nodes, passing ``rosidl_runtime_py.utilities.get_message``).
Reading a message only needs its field names, so the ``*_from_msg`` functions
take no classes. Poses and commands containing NaN or infinity are rejected
with a ``ValueError``.
"""

from __future__ import annotations

import array
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from reinforcegen_ros.geometry import mat_to_quat, quat_to_mat

PACKAGE = "reinforcegen_msgs"
#: The interface package's sources; ``REINFORCEGEN_MSGS_DIR`` overrides it (e.g. a non-editable install).
MSG_DIR = Path(os.environ.get("REINFORCEGEN_MSGS_DIR") or Path(__file__).resolve().parents[1] / PACKAGE)

# ----------------------------------------------------------------------------- topic contract
TOPIC_JOINT_STATES = "/joint_states"
TOPIC_EEF_POSE = "/eef_pose"
TOPIC_OBJECT_POSES = "/object_poses"
TOPIC_EEF_COMMAND = "/eef_command"
TOPIC_STAGE_STATUS = "/stage_status"
TOPIC_SIM_STATE = "/sim_state"
TOPIC_EPISODE = "/episode"
WORLD_FRAME = "world"
IMAGE_TOPIC_RE = re.compile(r"^/camera/([^/]+)/image_raw$")


def camera_topic(camera: str) -> str:
    """Image topic of ``camera``: ``/camera/<camera>/image_raw``."""
    return f"/camera/{camera}/image_raw"


# ----------------------------------------------------------------------------- type names
T_TIME = "builtin_interfaces/msg/Time"
T_HEADER = "std_msgs/msg/Header"
T_POINT = "geometry_msgs/msg/Point"
T_QUATERNION = "geometry_msgs/msg/Quaternion"
T_POSE = "geometry_msgs/msg/Pose"
T_POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
T_VECTOR3 = "geometry_msgs/msg/Vector3"
T_TWIST = "geometry_msgs/msg/Twist"
T_JOINT_STATE = "sensor_msgs/msg/JointState"
T_IMAGE = "sensor_msgs/msg/Image"
T_STAGE_STATUS = f"{PACKAGE}/msg/StageStatus"
T_EEF_COMMAND = f"{PACKAGE}/msg/EefCommand"
T_OBJECT_POSES = f"{PACKAGE}/msg/ObjectPoses"
T_DEMO_STEP = f"{PACKAGE}/msg/DemoStep"
T_EPISODE_MARKER = f"{PACKAGE}/msg/EpisodeMarker"
T_EXECUTE_TASK_GOAL = f"{PACKAGE}/action/ExecuteTask_Goal"
T_EXECUTE_TASK_RESULT = f"{PACKAGE}/action/ExecuteTask_Result"
T_RESET_SCENE_REQUEST = f"{PACKAGE}/srv/ResetScene_Request"
T_RESET_SCENE_RESPONSE = f"{PACKAGE}/srv/ResetScene_Response"
T_DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
T_DIAGNOSTIC_STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
T_KEY_VALUE = "diagnostic_msgs/msg/KeyValue"

#: Short class names of :class:`MsgClasses` and the ROS types they stand for.
CLASS_TYPES = {
    "Time": T_TIME,
    "Header": T_HEADER,
    "Point": T_POINT,
    "Quaternion": T_QUATERNION,
    "Pose": T_POSE,
    "PoseStamped": T_POSE_STAMPED,
    "Vector3": T_VECTOR3,
    "Twist": T_TWIST,
    "JointState": T_JOINT_STATE,
    "Image": T_IMAGE,
    "StageStatus": T_STAGE_STATUS,
    "EefCommand": T_EEF_COMMAND,
    "ObjectPoses": T_OBJECT_POSES,
    "DemoStep": T_DEMO_STEP,
    "EpisodeMarker": T_EPISODE_MARKER,
    "DiagnosticArray": T_DIAGNOSTIC_ARRAY,
    "DiagnosticStatus": T_DIAGNOSTIC_STATUS,
    "KeyValue": T_KEY_VALUE,
}

#: Values of StageStatus.phase (idle: no goal runs; reset: a goal waits for its simulated scene to be reset).
STATUS_PHASES = ("predict", "plan", "connect", "skill", "done", "failed", "idle", "reset")

#: ExecuteTask goal / ResetScene request seeds: the bridge's next scene, and no reset at all.
SEED_NEXT = -1
SEED_KEEP = -2

# Panda joints as a ROS driver (franka_ros2) names them. robosuite's second finger joint
# moves along -y, so its position is the negative of the ROS finger position.
ARM_JOINT_NAMES = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINT_NAMES = ("panda_finger_joint1", "panda_finger_joint2")
FINGER_SIGNS = np.array([1.0, -1.0])


# ----------------------------------------------------------------------------- type registration
def interface_definitions(msg_dir: Path = MSG_DIR) -> dict[str, str]:
    """Message definitions of the interface package, by full type name.

    Each action ``A`` yields ``A_Goal``, ``A_Result``, ``A_Feedback`` and
    ``A_FeedbackMessage`` (the type recorded on an action's feedback topic);
    each service ``S`` yields ``S_Request`` and ``S_Response``.
    """
    msg_dir = Path(msg_dir)
    if not (msg_dir / "msg").is_dir():
        raise FileNotFoundError(f"interface package not found at {msg_dir} (expected {msg_dir / 'msg'})")
    defs = {f"{PACKAGE}/msg/{f.stem}": f.read_text() for f in sorted((msg_dir / "msg").glob("*.msg"))}
    for f in sorted((msg_dir / "srv").glob("*.srv")):
        parts = re.split(r"^---[ \t]*$", f.read_text(), flags=re.MULTILINE)
        if len(parts) != 2:
            raise ValueError(f"{f}: a service needs a request and a response separated by '---'")
        for suffix, text in zip(("Request", "Response"), parts):
            defs[f"{PACKAGE}/srv/{f.stem}_{suffix}"] = text
    for f in sorted((msg_dir / "action").glob("*.action")):
        parts = re.split(r"^---[ \t]*$", f.read_text(), flags=re.MULTILINE)
        if len(parts) != 3:
            raise ValueError(f"{f}: an action needs goal, result and feedback separated by '---'")
        base = f"{PACKAGE}/action/{f.stem}"
        for suffix, text in zip(("Goal", "Result", "Feedback"), parts):
            defs[f"{base}_{suffix}"] = text
        defs[f"{base}_FeedbackMessage"] = f"unique_identifier_msgs/UUID goal_id\n{base}_Feedback feedback\n"
    return defs


def register_types(typestore, msg_dir: Path = MSG_DIR):
    """Register the interface package's types into a rosbags ``typestore``; returns it."""
    from rosbags.typesys import get_types_from_msg

    types: dict = {}
    for name, text in interface_definitions(msg_dir).items():
        parsed = get_types_from_msg(text, name)
        # rosbags spells a service part ``pkg/srv/msg/Name``; ROS 2 names it ``pkg/srv/Name``
        types.update({key.replace("/srv/msg/", "/srv/"): value for key, value in parsed.items()})
    typestore.register(types)
    return typestore


def make_typestore(distro: str = "ros2_jazzy", msg_dir: Path = MSG_DIR):
    """A rosbags typestore of ROS 2 ``distro``'s standard messages plus ours."""
    from rosbags.typesys import Stores, get_typestore

    return register_types(get_typestore(Stores(distro)), msg_dir)


# ----------------------------------------------------------------------------- class namespace
class MsgClasses:
    """Message classes by short name (``m.Pose``, ``m.EefCommand``, ...) for one library.

    ``lookup`` maps a full type name (``geometry_msgs/msg/Pose``) to its class.
    ``numpy_sequences`` says how primitive sequence fields are filled: numpy
    arrays (rosbags) or ``array.array``/lists (rclpy).
    """

    def __init__(self, lookup: Callable[[str], type], numpy_sequences: bool):
        self._lookup = lookup
        self._cache: dict[str, type] = {}
        self.numpy_sequences = numpy_sequences

    @classmethod
    def from_typestore(cls, typestore) -> "MsgClasses":
        """Classes of a rosbags typestore (see :func:`make_typestore`)."""
        return cls(lambda name: typestore.types[name], numpy_sequences=True)

    @classmethod
    def from_ros(cls, get_message: Callable[[str], type]) -> "MsgClasses":
        """Classes of a sourced ROS 2 install; pass ``rosidl_runtime_py.utilities.get_message``."""
        return cls(get_message, numpy_sequences=False)

    def __getattr__(self, short: str) -> type:
        if short.startswith("_") or short not in CLASS_TYPES:
            raise AttributeError(short)
        if short not in self._cache:
            self._cache[short] = self._lookup(CLASS_TYPES[short])
        return self._cache[short]

    # primitive sequence fields
    def float64s(self, values) -> Any:
        """A ``float64[]`` field value."""
        arr = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        return arr if self.numpy_sequences else array.array("d", arr.tobytes())

    def uint32s(self, values) -> Any:
        """A ``uint32[]`` field value."""
        arr = np.ascontiguousarray(values, dtype=np.uint32).reshape(-1)
        return arr if self.numpy_sequences else array.array("I", arr.tobytes())

    def uint8s(self, values) -> Any:
        """A ``uint8[]`` field value."""
        arr = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
        return arr if self.numpy_sequences else array.array("B", arr.tobytes())

    def bools(self, values) -> Any:
        """A ``bool[]`` field value."""
        arr = np.asarray(values, dtype=bool).reshape(-1)
        return arr if self.numpy_sequences else [bool(v) for v in arr]


# ----------------------------------------------------------------------------- checks
def _finite(what: str, values: np.ndarray) -> np.ndarray:
    """``values`` as float64, or a ValueError if any is NaN or infinite."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values: {arr.tolist()}")
    return arr


_EYE3 = np.eye(3)
_LAST_ROW = np.array([0.0, 0.0, 0.0, 1.0])
_IDENTITY_QUAT = np.array([0.0, 0.0, 0.0, 1.0])


def check_pose(pose: np.ndarray, what: str = "pose", tol: float = 1e-6) -> np.ndarray:
    """``pose`` as a float64 4x4 rigid transform, or a ValueError."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"{what} must be a 4x4 matrix, got shape {pose.shape}")
    _finite(what, pose)
    rot = pose[:3, :3]
    ortho_err = float(np.abs(rot.T @ rot - _EYE3).max())
    if float(np.abs(pose[3] - _LAST_ROW).max()) > tol or ortho_err > tol or np.linalg.det(rot) < 0:
        raise ValueError(f"{what} is not a rigid transform")
    return pose


# ----------------------------------------------------------------------------- time and header
def stamp_to_msg(stamp_ns: int, m: MsgClasses):
    """``builtin_interfaces/Time`` of a time in nanoseconds."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"stamps must be non-negative, got {stamp_ns} ns")
    return m.Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


def stamp_from_msg(stamp) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header_to_msg(stamp_ns: int, m: MsgClasses, frame_id: str = WORLD_FRAME):
    """``std_msgs/Header``."""
    return m.Header(stamp=stamp_to_msg(stamp_ns, m), frame_id=frame_id)


# ----------------------------------------------------------------------------- poses
def pos_quat_to_msg(pos: np.ndarray, quat_xyzw: np.ndarray, m: MsgClasses):
    """``geometry_msgs/Pose`` of a position and an (x, y, z, w) quaternion."""
    pos = _finite("pose position", pos).reshape(3)
    q = _finite("pose quaternion", quat_xyzw).reshape(4)
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > 1e-6:
        raise ValueError(f"pose quaternion must have unit norm, got norm {norm:.6g}")
    return m.Pose(
        position=m.Point(x=float(pos[0]), y=float(pos[1]), z=float(pos[2])),
        orientation=m.Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )


def pose_to_msg(pose: np.ndarray, m: MsgClasses, what: str = "pose"):
    """``geometry_msgs/Pose`` of a 4x4 pose (``what`` names it in errors)."""
    pose = check_pose(pose, what)
    return pos_quat_to_msg(pose[:3, 3], mat_to_quat(pose[:3, :3]), m)


def pos_quat_from_msg(msg) -> tuple[np.ndarray, np.ndarray]:
    """Position and unit (x, y, z, w) quaternion of a ``geometry_msgs/Pose``."""
    p, o = msg.position, msg.orientation
    pos = _finite("pose position", [p.x, p.y, p.z])
    q = _finite("pose quaternion", [o.x, o.y, o.z, o.w])
    norm = float(np.linalg.norm(q))
    if norm < 1e-6:
        raise ValueError("pose quaternion is zero")
    return pos, q / norm


def pose_from_msg(msg) -> np.ndarray:
    """4x4 pose of a ``geometry_msgs/Pose`` (the quaternion is normalised)."""
    pos, q = pos_quat_from_msg(msg)
    pose = np.eye(4)
    pose[:3, :3] = quat_to_mat(q)
    pose[:3, 3] = pos
    return pose


def pose_stamped_to_msg(pose: np.ndarray, stamp_ns: int, m: MsgClasses, frame_id: str = WORLD_FRAME):
    """``geometry_msgs/PoseStamped`` of a 4x4 pose."""
    return m.PoseStamped(header=header_to_msg(stamp_ns, m, frame_id), pose=pose_to_msg(pose, m))


def object_poses_to_msg(poses: Mapping[str, np.ndarray], stamp_ns: int, m: MsgClasses, frame_id: str = WORLD_FRAME):
    """``ObjectPoses`` of a name -> 4x4 pose mapping (order kept)."""
    return m.ObjectPoses(
        header=header_to_msg(stamp_ns, m, frame_id),
        names=[str(n) for n in poses],
        poses=[pose_to_msg(p, m, f"pose of '{n}'") for n, p in poses.items()],
    )


def object_poses_from_msg(msg) -> dict[str, np.ndarray]:
    """Name -> 4x4 pose of an ``ObjectPoses``."""
    if len(msg.names) != len(msg.poses):
        raise ValueError(f"ObjectPoses has {len(msg.names)} names but {len(msg.poses)} poses")
    return {str(n): pose_from_msg(p) for n, p in zip(msg.names, msg.poses)}


# ----------------------------------------------------------------------------- commands
def action_to_msg(action: np.ndarray, stamp_ns: int, m: MsgClasses, frame_id: str = WORLD_FRAME):
    """``EefCommand`` of a 7-D action (normalised delta position, delta axis-angle, gripper)."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (7,):
        raise ValueError(f"an action has 7 values (6 delta pose + gripper), got shape {a.shape}")
    a = _finite("action", a)
    return m.EefCommand(
        header=header_to_msg(stamp_ns, m, frame_id),
        delta=m.Twist(
            linear=m.Vector3(x=float(a[0]), y=float(a[1]), z=float(a[2])),
            angular=m.Vector3(x=float(a[3]), y=float(a[4]), z=float(a[5])),
        ),
        gripper=float(a[6]),
    )


def action_from_msg(msg) -> np.ndarray:
    """7-D action of an ``EefCommand``."""
    lin, ang = msg.delta.linear, msg.delta.angular
    return _finite("EefCommand", [lin.x, lin.y, lin.z, ang.x, ang.y, ang.z, msg.gripper])


# ----------------------------------------------------------------------------- joints and images
def joint_state_to_msg(
    joint_pos: np.ndarray,
    gripper_qpos: np.ndarray | None,
    stamp_ns: int,
    m: MsgClasses,
) -> Any:
    """``sensor_msgs/JointState`` of the arm joints and (robosuite-convention) finger positions."""
    q = _finite("joint positions", joint_pos).reshape(-1)
    if len(q) != len(ARM_JOINT_NAMES):
        raise ValueError(f"expected {len(ARM_JOINT_NAMES)} arm joint positions, got {len(q)}")
    names = list(ARM_JOINT_NAMES)
    if gripper_qpos is not None:
        g = _finite("gripper positions", gripper_qpos).reshape(-1)
        if len(g) != len(FINGER_JOINT_NAMES):
            raise ValueError(f"expected {len(FINGER_JOINT_NAMES)} finger positions, got {len(g)}")
        q = np.concatenate([q, g * FINGER_SIGNS])
        names += FINGER_JOINT_NAMES
    return m.JointState(
        header=header_to_msg(stamp_ns, m, frame_id=""),
        name=names,
        position=m.float64s(q),
        velocity=m.float64s([]),
        effort=m.float64s([]),
    )


def joint_state_from_msg(msg) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Arm joint positions and robosuite-convention finger positions (None where absent)."""
    pos = np.asarray(msg.position, dtype=np.float64)
    index = {str(n): i for i, n in enumerate(msg.name)}
    if len(pos) != len(index):
        raise ValueError(f"JointState has {len(index)} names but {len(pos)} positions")

    def pick(names):
        return pos[[index[n] for n in names]] if all(n in index for n in names) else None

    fingers = pick(FINGER_JOINT_NAMES)
    return pick(ARM_JOINT_NAMES), None if fingers is None else fingers * FINGER_SIGNS


def image_to_msg(image: np.ndarray, stamp_ns: int, m: MsgClasses, frame_id: str = ""):
    """``sensor_msgs/Image`` (rgb8) of an HxWx3 uint8 image."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"images must be HxWx3 uint8, got shape {img.shape} dtype {img.dtype}")
    h, w, _ = img.shape
    return m.Image(
        header=header_to_msg(stamp_ns, m, frame_id),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=3 * w,
        data=m.uint8s(img),
    )


def image_from_msg(msg) -> np.ndarray:
    """HxWx3 uint8 RGB image of an rgb8 or bgr8 ``sensor_msgs/Image``."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"unsupported image encoding '{msg.encoding}' (rgb8 or bgr8 expected)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(msg.data.tobytes() if isinstance(msg.data, np.ndarray) else bytes(msg.data), np.uint8)
    if step < 3 * w or len(data) < h * step:
        raise ValueError(f"image data of {len(data)} bytes does not fit {h}x{w} with step {step}")
    img = data[: h * step].reshape(h, step)[:, : 3 * w].reshape(h, w, 3)
    return np.ascontiguousarray(img[..., ::-1] if msg.encoding == "bgr8" else img)


# ----------------------------------------------------------------------------- stage status
@dataclass
class StageStatusData:
    """Contents of a ``StageStatus`` message."""

    stamp_ns: int
    stage_index: int
    stage_name: str
    phase: str
    target_pose: np.ndarray
    termination_probability: float
    replan_count: int
    failure_reason: str


def stage_status_to_msg(
    stamp_ns: int,
    stage_index: int,
    stage_name: str,
    phase: str,
    m: MsgClasses,
    target_pose: np.ndarray | None = None,
    termination_probability: float = 0.0,
    replan_count: int = 0,
    failure_reason: str = "",
    frame_id: str = WORLD_FRAME,
):
    """``StageStatus``; ``phase`` is one of :data:`STATUS_PHASES`, ``target_pose`` defaults to identity."""
    if phase not in STATUS_PHASES:
        raise ValueError(f"unknown phase '{phase}'; choose one of {', '.join(STATUS_PHASES)}")
    prob = float(_finite("termination probability", termination_probability))
    return m.StageStatus(
        header=header_to_msg(stamp_ns, m, frame_id),
        stage_index=int(stage_index),
        stage_name=str(stage_name),
        phase=phase,
        target_pose=pos_quat_to_msg(np.zeros(3), _IDENTITY_QUAT, m) if target_pose is None else pose_to_msg(target_pose, m, "target pose"),
        termination_probability=prob,
        replan_count=int(replan_count),
        failure_reason=str(failure_reason),
    )


def stage_status_from_msg(msg) -> StageStatusData:
    """Contents of a ``StageStatus``."""
    return StageStatusData(
        stamp_ns=stamp_from_msg(msg.header.stamp),
        stage_index=int(msg.stage_index),
        stage_name=str(msg.stage_name),
        phase=str(msg.phase),
        target_pose=pose_from_msg(msg.target_pose),
        termination_probability=float(msg.termination_probability),
        replan_count=int(msg.replan_count),
        failure_reason=str(msg.failure_reason),
    )


def strings(values: Sequence[str]) -> list[str]:
    """A ``string[]`` field value (a list of ``str`` in both libraries)."""
    return [str(v) for v in values]


# ----------------------------------------------------------------------------- ExecuteTask and ResetScene
@dataclass
class ExecuteTaskGoalData:
    """Contents of an ``ExecuteTask`` goal."""

    task: str
    time_limit: float
    seed: int = SEED_NEXT


def execute_task_goal_from_msg(msg) -> ExecuteTaskGoalData:
    """Contents of an ``ExecuteTask`` goal; a goal without ``seed`` (an older client) gets :data:`SEED_NEXT`.

    A non-finite or negative ``time_limit`` and a seed below :data:`SEED_KEEP` are ``ValueError``.
    """
    limit = float(msg.time_limit)
    if not np.isfinite(limit) or limit < 0:
        raise ValueError(f"time_limit must be a finite number of seconds >= 0, got {limit}")
    seed = int(getattr(msg, "seed", SEED_NEXT))
    if seed < SEED_KEEP:
        raise ValueError(f"seed must be >= 0, {SEED_NEXT} (the next scene) or {SEED_KEEP} (keep the scene), got {seed}")
    return ExecuteTaskGoalData(str(msg.task), limit, seed)


def execute_task_goal_to_msg(goal_cls, task: str, time_limit: float = 0.0, seed: int = SEED_NEXT):
    """An ``ExecuteTask`` goal of class ``goal_cls`` (rclpy's ``ExecuteTask.Goal`` or the typestore's ``ExecuteTask_Goal``)."""
    data = execute_task_goal_from_msg(ExecuteTaskGoalData(task, time_limit, seed))
    return goal_cls(task=data.task, time_limit=data.time_limit, seed=data.seed)


def execute_task_result_to_msg(result_cls, success: bool, reason: str, stages_completed: int, duration: float, seed: int = SEED_KEEP):
    """An ``ExecuteTask`` result of class ``result_cls``."""
    return result_cls(success=bool(success), reason=str(reason), stages_completed=int(stages_completed),
                      duration=float(_finite("duration", duration)), seed=int(seed))


def reset_scene_response_to_msg(response, success: bool, message: str, seed: int, stamp_ns: int, m: MsgClasses):
    """Fill a ``ResetScene`` response (rclpy passes the response object to the service callback) and return it."""
    response.success, response.message, response.seed = bool(success), str(message), int(seed)
    response.stamp = stamp_to_msg(stamp_ns, m)
    return response


# ----------------------------------------------------------------------------- episode markers
def episode_marker_to_msg(
    m: MsgClasses,
    event: int,
    stamp_ns: int,
    episode_index: int,
    task: str,
    stage_names: Sequence[str],
    num_steps: int = 0,
    success: bool = False,
    attrs_json: str = "{}",
):
    """``EpisodeMarker`` (``event`` 0 START, 1 END)."""
    if event not in (0, 1):
        raise ValueError(f"an episode marker event is 0 (START) or 1 (END), got {event}")
    return m.EpisodeMarker(
        header=header_to_msg(stamp_ns, m), event=int(event), episode_index=int(episode_index), task=str(task),
        stage_names=strings(stage_names), num_steps=int(num_steps), success=bool(success), attrs_json=str(attrs_json),
    )


# ----------------------------------------------------------------------------- diagnostics
#: diagnostic_msgs/DiagnosticStatus levels.
DIAGNOSTIC_LEVELS = ("OK", "WARN", "ERROR", "STALE")


def diagnostics_to_msg(statuses: Sequence, stamp_ns: int, m: MsgClasses):
    """``diagnostic_msgs/DiagnosticArray`` of items with ``level`` (0-3), ``name``, ``message``, ``hardware_id``, ``values`` (dict).

    The level is set from the class constants, so it is a ``bytes`` value for rclpy (the ROS ``byte`` type)
    and an int for rosbags.
    """
    out = []
    for st in statuses:
        level = int(st.level)
        if not 0 <= level < len(DIAGNOSTIC_LEVELS):
            raise ValueError(f"diagnostic level must be 0..3, got {level}")
        out.append(m.DiagnosticStatus(
            level=getattr(m.DiagnosticStatus, DIAGNOSTIC_LEVELS[level]), name=str(st.name), message=str(st.message),
            hardware_id=str(getattr(st, "hardware_id", "")),
            values=[m.KeyValue(key=str(k), value=str(v)) for k, v in dict(st.values).items()],
        ))
    return m.DiagnosticArray(header=header_to_msg(stamp_ns, m, frame_id=""), status=out)


def diagnostic_level(level) -> int:
    """Integer level of a ``DiagnosticStatus.level`` (``bytes`` in rclpy, int in rosbags)."""
    return int.from_bytes(level, "little") if isinstance(level, (bytes, bytearray)) else int(level)

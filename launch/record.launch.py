"""Record what data generation needs as a rosbag2 (MCAP) for ``reinforcegen bag2demos``.

    ros2 launch reinforcegen_ros record.launch.py output:=runs/bags/coffee_run cameras:=agentview,robot0_eye_in_hand

Topics: /eef_command (the steps), /eef_pose, /joint_states, /object_poses,
/stage_status (stage and phase annotations), /sim_state and /episode
(simulation), /tf, /tf_static, /clock and the camera images. Start it next to
hybrid.launch.py (or a teleoperation setup); stop it with Ctrl-C.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.actions import ExecuteProcess
from launch.substitutions import LaunchConfiguration

TOPICS = ["/eef_command", "/eef_pose", "/joint_states", "/object_poses", "/stage_status", "/sim_state", "/episode",
          "/tf", "/tf_static", "/clock", "/pose_predictor/pose", "/pose_predictor/path", "/termination/status"]


def _record(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    cameras = [c for c in arg("cameras").split(",") if c]
    topics = TOPICS + [f"/camera/{c}/image_raw" for c in cameras]
    cmd = ["ros2", "bag", "record", "-s", arg("storage"), "-o", arg("output")] + topics
    if arg("use_sim_time").lower() in ("true", "1"):
        cmd.append("--use-sim-time")
    return [ExecuteProcess(cmd=cmd, output="screen")]


def generate_launch_description() -> LaunchDescription:
    args = [
        ("output", "reinforcegen_bag", "bag directory to create"),
        ("storage", "mcap", "mcap | sqlite3"),
        ("cameras", "agentview,robot0_eye_in_hand", "camera image topics to record (comma separated)"),
        ("use_sim_time", "true", "stamp the bag with /clock (simulation)"),
    ]
    return LaunchDescription([DeclareLaunchArgument(n, default_value=d, description=h) for n, d, h in args] + [OpaqueFunction(function=_record)])

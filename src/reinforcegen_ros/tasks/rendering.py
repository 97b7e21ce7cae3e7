"""Camera frames of a task scene, drawn with less work than robosuite's ``sim.render``.

On a CPU (EGL or OSMesa software rendering) a frame's cost is the vertices of
the meshes drawn: a scene with the Panda has some 10⁵ triangles, and an empty
scene renders in a tenth of a millisecond. :class:`CameraRenderer` draws
through robosuite's offscreen context (one per environment, reused) and

- leaves out of the scene every geom whose bounding sphere lies wholly outside
  the camera's view frustum: such a geom colours no pixel, so the image is the
  same, and the wrist camera, which does not see most of the arm, gets much
  cheaper (skipped while floor reflections are on, since a mirror shows what
  the frustum does not contain);
- sizes the offscreen buffer to the frames asked for instead of robosuite's
  640x480 (grown when a larger frame is asked for);
- reads RGB only (no depth, no segmentation) into one array, flipped upright.

``config/rendering.yaml`` (reflections, multisampling) applies as before.
"""

from __future__ import annotations

import mujoco
import numpy as np

HIDDEN = int(mujoco.mjtGeom.mjGEOM_NONE)  # a scene geom of this type is not drawn
CULL_MARGIN = 1e-3  # metres a bounding sphere must clear a frustum plane by to be left out


def frustum_cull(scene: mujoco.MjvScene, aspect: float) -> int:
    """Hide the scene's geoms whose bounding spheres lie outside the camera's view frustum; their number.

    The camera is the mean of the scene's two eye cameras, as ``mjr_render`` draws
    a mono image; ``aspect`` is the viewport's width / height (MuJoCo widens the
    frustum to it). Geoms without a bounding radius (planes, decorations) stay.
    """
    cam = mujoco.mjv_averageCamera(scene.camera[0], scene.camera[1])
    pos, forward, up = np.array(cam.pos), np.array(cam.forward), np.array(cam.up)
    right = np.cross(forward, up)
    near, far = cam.frustum_near, cam.frustum_far
    top, bottom = cam.frustum_top / near, cam.frustum_bottom / near  # slopes of the frustum's sides
    half_width = max(abs(top), abs(bottom)) * aspect + abs(cam.frustum_center) / near
    sides = np.array([[1.0, 0.0, -half_width], [-1.0, 0.0, -half_width], [0.0, 1.0, -top], [0.0, -1.0, bottom]])
    sides /= np.linalg.norm(sides, axis=1, keepdims=True)  # outward normals in camera (right, up, forward) coordinates
    geoms = scene.geoms[: scene.ngeom]
    radius = np.array([g.modelrbound for g in geoms])
    rel = np.array([g.pos for g in geoms]) - pos
    local = np.stack([rel @ right, rel @ up, rel @ forward], axis=1)
    outside = (local[:, 2] + radius < near - CULL_MARGIN) | (local[:, 2] - radius > far + CULL_MARGIN)
    outside |= np.any(local @ sides.T > radius[:, None] + CULL_MARGIN, axis=1)
    outside &= radius > 0
    for i in np.flatnonzero(outside):
        geoms[i].type = HIDDEN
    return int(outside.sum())


class CameraRenderer:
    """RGB frames of a robosuite simulation's cameras through its offscreen context."""

    def __init__(self, sim, render_config: dict, size: int | None = 84):
        """``size``: side of the square offscreen buffer to make (None keeps robosuite's)."""
        self.sim = sim
        if sim._render_context_offscreen is None:  # robosuite makes it at reset when offscreen rendering is on
            from robosuite.utils.binding_utils import MjRenderContextOffscreen

            MjRenderContextOffscreen(sim, device_id=-1)
        self.context = sim._render_context_offscreen
        model, con = sim.model._model, self.context.con
        samples = int(render_config.get("offscreen_samples", 4))
        size = size or con.offWidth, size or con.offHeight
        if (con.offSamples, con.offWidth, con.offHeight) != (samples, *size):
            model.vis.quality.offsamples = samples  # buffers are made with the context: make it again
            model.vis.global_.offwidth, model.vis.global_.offheight = size
            self.context.gl_ctx.make_current()
            self.context.con.free()
            self.context._set_mujoco_context_and_buffers()
        self.reflections = bool(render_config.get("reflections", True))
        self.context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(self.reflections)
        self.culled = 0  # geoms left out of the last frame

    def render(self, camera: str, width: int, height: int) -> np.ndarray:
        """(height, width, 3) uint8 image, upright, from the named camera in the current state."""
        ctx, model = self.context, self.sim.model._model
        if width > ctx.con.offWidth or height > ctx.con.offHeight:
            ctx.update_offscreen_size(max(width, ctx.con.offWidth), max(height, ctx.con.offHeight))
        ctx.gl_ctx.make_current()
        ctx.cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        ctx.cam.fixedcamid = model.camera(camera).id
        mujoco.mjv_updateScene(model, self.sim.data._data, ctx.vopt, ctx.pert, ctx.cam, mujoco.mjtCatBit.mjCAT_ALL, ctx.scn)
        self.culled = 0 if self.reflections else frustum_cull(ctx.scn, width / height)
        viewport = mujoco.MjrRect(0, 0, width, height)
        mujoco.mjr_render(viewport, ctx.scn, ctx.con)
        image = np.empty((height, width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(image, None, viewport, ctx.con)
        return image[::-1].copy()


def free_offscreen_context(sim) -> None:
    """Free robosuite's offscreen context of ``sim`` from inside its own GL context.

    robosuite frees the context's GL objects when the simulation goes away, in
    whichever GL context is current then, which may be another environment's:
    that one's buffers are destroyed and it renders garbage from then on.
    """
    ctx = getattr(sim, "_render_context_offscreen", None)
    if ctx is not None and ctx.gl_ctx is not None:
        ctx.gl_ctx.make_current()
        ctx.con.free()
        ctx.gl_ctx.free()


def robosuite_frame(sim, camera: str, width: int, height: int) -> np.ndarray:
    """robosuite's own ``sim.render``, upright: the reference for :class:`CameraRenderer` (and what TaskEnv used before)."""
    sim._render_context_offscreen.gl_ctx.make_current()  # robosuite leaves this to whoever made the last context
    return np.ascontiguousarray(sim.render(camera_name=camera, width=width, height=height)[::-1])

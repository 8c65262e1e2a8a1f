"""ImageNav on MiniWorld: ``ImageNav-<scene>``, the paper's Habitat image-goal task on a simulator that renders here.

Scenes are procedurally generated multi-room floor plans, named and seeded: the
layout of ``ImageNav-apartment_0`` is a pure function of its name (CRC-32 seed), so
every process and machine builds the same scene, and several scenes can be
trained on jointly (``--env ImageNav-apartment_0,ImageNav-office_1``). The part
before the trailing ``_<n>`` picks the floor-plan shape (the original's Replica
scene kinds): ``room`` 1×2 rooms, ``apartment`` 2×2, ``frl_apartment`` 2×3, ``office``
3×2, ``hotel`` 1×4; any other name gets a shape drawn from its seed. Rooms are
3–5 m on a side, each with its own wall and floor texture, joined by 1.2 m doorways
(a random spanning tree of the room grid plus a few extra doors) and furnished
with 1–2 distinct objects (coloured boxes, balls, barrels, cones, chairs...).

The task (see :mod:`pvr.envs.navtask`, the original's rules): 64×64 views by default
(the original's Habitat sensor), 79° field of view, forward 0.25 m, turns 10°, 500
steps, success when the geodesic distance to the goal is under 0.2 m (MiniWorld's
agent is a 0.25 m-radius cylinder here), Habitat's reward and start rules, and the
12-value Habitat ``true_state`` with y = 0 and the rotation about +y by Habitat's yaw
= MiniWorld heading - pi/2.

Geometry for goals and experts: a free-space grid at 0.1 m over the floor plan,
walls and objects inflated by the agent radius + 0.15 m; the largest connected
region is the reachable space (starts and goals are sampled only there). A
Dijkstra distance field from the goal over a graph whose edges are the straight
moves of up to ``geodesic_reach`` = 5 cells that cross free cells only (an
8-connected grid would make straight-line geodesics up to 8 % too long, which
biases Habitat's geodesic / Euclidean start test; ``geodesic_reach=1`` is that
grid) gives geodesic distances and shortest paths:
``env.unwrapped.geodesic_distance(pos)``, ``env.unwrapped.shortest_path(pos)``, and
``env.unwrapped.backend.distance_field`` with ``backend.grid`` (origin, cell size) for planners.
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from pvr.envs import navtask
from pvr.envs.registry import register_suite
from pvr.envs.render import image_hw
from pvr.envs.wrappers import InfoWrapper
from pvr.errors import PvrError

SUITE = "ImageNav"
PREFIX = "ImageNav-"
DEFAULT_IMAGE_SIZE = 64
CELL = 0.1
AGENT_RADIUS = 0.25
INFLATE = AGENT_RADIUS + 0.15
DOOR_WIDTH = 1.2
GEODESIC_REACH = 5  # graph moves up to 5 cells: straight-line distances within 0.5 %
QUERY_WINDOW = 3  # cells around a query point searched for its best cell
SHAPES = {"room": (1, 2), "apartment": (2, 2), "frl_apartment": (2, 3), "office": (3, 2), "hotel": (1, 4)}
WALL_TEX = ["brick_wall", "cinder_blocks", "concrete", "drywall", "marble", "stucco", "wood_planks",
            "metal_grill", "airduct_grate", "rock", "wood", "slime"]
FLOOR_TEX = ["floor_tiles_bw", "stucco", "asphalt", "grass", "wood", "wood_planks", "marble",
             "concrete_tiles", "cardboard", "rock", "water", "lava"]
CEIL_TEX = ["concrete_tiles", "ceiling_tiles", "ceiling_tile_noborder", "white"]
COLOURS = ["red", "green", "blue", "purple", "yellow", "grey"]
MESHES = [("barrel", 1.0), ("cone", 0.6), ("office_chair", 1.0), ("office_desk", 0.9), ("duckie", 0.5),
          ("medkit", 0.4), ("potion", 0.5), ("tree_pine", 1.8)]


def _probe() -> str | None:
    try:
        import miniworld  # noqa: F401
    except Exception as exc:
        return f"cannot import miniworld ({exc}); pip install miniworld==2.1.0 pyglet==1.5.31, Debian libegl1 libgl1"
    return None


# -- scene description (pure function of the name) -----------------------------------------------
@dataclass
class Room:
    x0: float
    x1: float
    z0: float
    z1: float
    wall_tex: str
    floor_tex: str
    ceil_tex: str


@dataclass
class Scene:
    name: str
    rooms: list[Room]
    doors: list[tuple[int, int, float, float]]  # (room a, room b, lo, hi along the shared wall)
    objects: list[tuple[str, Any, float, float, float]] = field(default_factory=list)  # (kind, spec, x, z, dir)


def scene_seed(name: str) -> int:
    return zlib.crc32(name.encode())


def generate_scene(name: str) -> Scene:
    """The floor plan of scene ``name`` (deterministic; see module docstring)."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise PvrError(f"ImageNav scene names use letters, digits and '_' (e.g. apartment_0), got {name!r}")
    rng = np.random.default_rng(scene_seed(name))
    kind = re.sub(r"_\d+$", "", name)
    rows, cols = SHAPES.get(kind) or [(2, 2), (2, 3), (1, 3), (3, 2)][int(rng.integers(4))]
    widths = np.round(rng.uniform(3.0, 5.0, cols), 1)
    depths = np.round(rng.uniform(3.0, 5.0, rows), 1)
    xs, zs = np.concatenate([[0], np.cumsum(widths)]), np.concatenate([[0], np.cumsum(depths)])
    walls, floors = rng.permutation(WALL_TEX), rng.permutation(FLOOR_TEX)
    ceil = str(CEIL_TEX[int(rng.integers(len(CEIL_TEX)))])
    rooms = [Room(float(xs[c]), float(xs[c + 1]), float(zs[r]), float(zs[r + 1]), str(walls[i % len(walls)]),
                  str(floors[i % len(floors)]), ceil)
             for i, (r, c) in enumerate((r, c) for r in range(rows) for c in range(cols))]
    # Doors: a random spanning tree over the room grid (every room reachable), plus extras.
    edges = [(r * cols + c, r * cols + c + 1) for r in range(rows) for c in range(cols - 1)]
    edges += [(r * cols + c, (r + 1) * cols + c) for r in range(rows - 1) for c in range(cols)]
    order = rng.permutation(len(edges))
    parent = list(range(len(rooms)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    chosen = []
    for k in order:
        a, b = edges[k]
        if find(a) != find(b):
            parent[find(a)] = find(b)
            chosen.append((a, b))
        elif rng.random() < 0.35:
            chosen.append((a, b))
    doors = []
    for a, b in sorted(chosen):
        ra, rb = rooms[a], rooms[b]
        if b == a + 1:  # shared wall at x = ra.x1, door spans z
            lo_lim, hi_lim = max(ra.z0, rb.z0), min(ra.z1, rb.z1)
        else:  # shared wall at z = ra.z1, door spans x
            lo_lim, hi_lim = max(ra.x0, rb.x0), min(ra.x1, rb.x1)
        lo = float(np.round(rng.uniform(lo_lim + 0.4, hi_lim - 0.4 - DOOR_WIDTH), 2))
        doors.append((a, b, lo, lo + DOOR_WIDTH))
    # Objects: 1-2 per room, each distinct, away from walls and doorways.
    palette = [("box", c) for c in COLOURS] + [("ball", c) for c in COLOURS] + [("mesh", m) for m in MESHES]
    palette = [palette[i] for i in rng.permutation(len(palette))]
    door_centres = []
    for a, b, lo, hi in doors:
        ra = rooms[a]
        door_centres.append((ra.x1, (lo + hi) / 2) if b == a + 1 else ((lo + hi) / 2, ra.z1))
    objects = []
    for room in rooms:
        for _ in range(int(rng.integers(1, 3))):
            if not palette:
                break
            kind, spec = palette.pop()
            for _try in range(50):
                x = float(rng.uniform(room.x0 + 0.9, room.x1 - 0.9))
                z = float(rng.uniform(room.z0 + 0.9, room.z1 - 0.9))
                if all(math.hypot(x - dx, z - dz) > 1.6 for dx, dz in door_centres) and \
                        all(math.hypot(x - o[2], z - o[3]) > 1.2 for o in objects):
                    objects.append((kind, spec, x, z, float(rng.uniform(-math.pi, math.pi))))
                    break
    return Scene(name, rooms, doors, objects)


# -- the MiniWorld world and the backend -----------------------------------------------------------
def texture_pixels(tex_path: str):
    """A texture file as pyglet ``ImageData`` in RGBA, rows bottom-up (pyglet's layout), decoded by PIL.

    MiniWorld's ``Texture.load`` lets pyglet decode and then convert every texture to
    RGBA with a per-pixel regular expression in Python: 1–2 s per texture here, ~10 s
    per new scene. Decoding straight to RGBA with PIL gives the same bytes in ~10 ms.
    """
    import pyglet
    from PIL import Image

    with Image.open(tex_path) as img:
        rgba = img.convert("RGBA").transpose(Image.FLIP_TOP_BOTTOM)
        return pyglet.image.ImageData(rgba.width, rgba.height, "RGBA", rgba.tobytes())


def _fast_texture_load(cls, tex_path):
    """``miniworld.opengl.Texture.load`` with :func:`texture_pixels` as the decoder (same GL calls)."""
    from pyglet.gl import (GL_GENERATE_MIPMAP_HINT, GL_LINEAR, GL_LINEAR_MIPMAP_LINEAR, GL_NICEST, GL_RGB,
                           GL_RGBA, GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_TEXTURE_MIN_FILTER, GL_UNSIGNED_BYTE,
                           glBindTexture, glEnable, glGenerateMipmap, glHint, glTexImage2D, glTexParameteri)

    img = texture_pixels(tex_path)
    tex = img.get_texture()
    glEnable(tex.target)
    glBindTexture(tex.target, tex.id)
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGB, img.width, img.height, 0, GL_RGBA, GL_UNSIGNED_BYTE,
                 img.get_data("RGBA", img.width * 4))
    glHint(GL_GENERATE_MIPMAP_HINT, GL_NICEST)
    glGenerateMipmap(GL_TEXTURE_2D)
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR)
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR_MIPMAP_LINEAR)
    glBindTexture(GL_TEXTURE_2D, 0)
    return tex


def _world_class():
    from miniworld.entity import Ball, Box, MeshEnt
    from miniworld.opengl import Texture

    if Texture.__dict__["load"].__func__ is not _fast_texture_load:
        Texture.load = classmethod(_fast_texture_load)
    from miniworld.miniworld import MiniWorldEnv
    from miniworld.params import DEFAULT_PARAMS

    class NavWorld(MiniWorldEnv):
        """A MiniWorld env that builds one :class:`Scene`; the task is :class:`ImageNavEnv`'s."""

        def __init__(self, scene: Scene, hw: tuple[int, int], forward_step: float, turn_deg: float, fov: float):
            self.scene = scene
            self.fov = fov
            params = DEFAULT_PARAMS.no_random()
            params.set("forward_step", forward_step)
            params.set("forward_drift", 0.0)
            params.set("turn_step", turn_deg)
            super().__init__(max_episode_steps=10**9, obs_width=hw[1], obs_height=hw[0], params=params,
                             domain_rand=False)

        def _gen_world(self):
            rooms = [self.add_rect_room(min_x=r.x0, max_x=r.x1, min_z=r.z0, max_z=r.z1, wall_tex=r.wall_tex,
                                        floor_tex=r.floor_tex, ceil_tex=r.ceil_tex) for r in self.scene.rooms]
            for a, b, lo, hi in self.scene.doors:
                if b == a + 1:
                    self.connect_rooms(rooms[a], rooms[b], min_z=lo, max_z=hi, max_y=2.2)
                else:
                    self.connect_rooms(rooms[a], rooms[b], min_x=lo, max_x=hi, max_y=2.2)
            for kind, spec, x, z, d in self.scene.objects:
                if kind == "box":
                    ent = Box(color=spec, size=0.7)
                elif kind == "ball":
                    ent = Ball(color=spec, size=0.6)
                else:
                    ent = MeshEnt(mesh_name=spec[0], height=spec[1], static=True)
                self.place_entity(ent, pos=np.array([x, 0.0, z]), dir=d)
            self.agent.radius = AGENT_RADIUS
            self.agent.cam_fov_y = self.fov
            r0 = self.scene.rooms[0]
            self.place_agent(pos=np.array([(r0.x0 + r0.x1) / 2, 0.0, (r0.z0 + r0.z1) / 2]), dir=0.0)

    return NavWorld


_LIST_OWNER: Any = None  # the MiniWorld world whose static scene is in display list 1


def _seg_distance(points: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """Distance from each point (N, 2) to the nearest segment (M, 2, 2)."""
    a, b = segs[:, 0], segs[:, 1]
    ab = b - a
    t = ((points[:, None, :] - a[None]) * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12)[None]
    t = np.clip(t, 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None, :] - closest, axis=-1).min(axis=1)


def grid_moves(reach: int) -> list[tuple[int, int]]:
    """The graph's moves (half of them: each edge is undirected): every cell offset (dx, dz) with
    max(|dx|, |dz|) <= ``reach`` in lowest terms. ``reach`` 1 is the 8-connected grid (diagonal paths
    overestimate straight-line distances by up to 8.2 %); 5 leaves at most 0.5 % (the largest angle between
    neighbouring moves is atan(1/5), and a straight line is at worst 1 / cos(half of it) longer)."""
    moves = []
    for dx in range(0, reach + 1):
        for dz in range(-reach, reach + 1):
            if (dx, dz) != (0, 0) and math.gcd(dx, abs(dz)) == 1 and (dx > 0 or dz > 0):
                moves.append((dx, dz))
    return moves


class MiniWorldBackend(navtask.NavBackend):
    """A :class:`Scene` in MiniWorld, with its free-space grid and a Dijkstra field to the goal."""

    def __init__(self, scene: Scene, hw: tuple[int, int], *, forward_step: float = 0.25, turn_angle: float = 10.0,
                 fov: float = 79.0, geodesic_reach: int = GEODESIC_REACH):
        self.forward_step, self.turn_angle_deg = forward_step, turn_angle
        if not 1 <= int(geodesic_reach) <= 8:
            raise PvrError(f"ImageNav geodesic_reach is 1 (8-connected grid) to 8, got {geodesic_reach}")
        self.geodesic_reach = int(geodesic_reach)
        global _LIST_OWNER
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # "Falling back to num_samples=4" (MSAA 8 -> 4)
            self.world = _world_class()(scene, hw, forward_step, turn_angle, fov)  # __init__ builds the scene
        _LIST_OWNER = self.world  # ... and compiles it into display list 1
        self._build_grid()
        self.distance_field = np.full(self.free.shape, np.inf)
        self._pred = np.full(int(self.free.sum()), -9999)
        self._goal_cell = (0, 0)

    # grid ---------------------------------------------------------------------------------------
    def _build_grid(self) -> None:
        from scipy import ndimage
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        w = self.world
        x0, z0 = w.min_x, w.min_z
        nx, nz = int(math.ceil((w.max_x - x0) / CELL)), int(math.ceil((w.max_z - z0) / CELL))
        self.grid = {"origin": (float(x0), float(z0)), "cell": CELL, "shape": (nx, nz)}
        ix, iz = np.meshgrid(np.arange(nx), np.arange(nz), indexing="ij")
        pts = np.stack([x0 + (ix + 0.5) * CELL, z0 + (iz + 0.5) * CELL], -1).reshape(-1, 2)
        inside = np.zeros(len(pts), bool)
        for r in w.rooms:
            inside |= (pts[:, 0] > r.min_x) & (pts[:, 0] < r.max_x) & (pts[:, 1] > r.min_z) & (pts[:, 1] < r.max_z)
        segs = np.asarray(w.wall_segs)[:, :, [0, 2]]
        clearance = _seg_distance(pts, segs)
        for ent in w.entities:
            if ent is w.agent or not ent.radius:
                continue
            d = np.linalg.norm(pts - np.array([ent.pos[0], ent.pos[2]]), axis=1) - ent.radius
            clearance = np.minimum(clearance, d)
        clearance = np.where(inside, clearance, -1.0)
        self.clearance = clearance.reshape(nx, nz)  # metres to the nearest wall/object; < 0 outside
        free = self.clearance > INFLATE
        # Graph over free cells: an edge for each move whose straight segment crosses free cells only
        # (sampled about every quarter cell), weighted by its length. The largest component is the reachable space.
        idx = -np.ones((nx, nz), int)
        idx[free] = np.arange(int(free.sum()))
        src_i, src_j = np.nonzero(free)
        rows, cols, vals = [], [], []
        for dx, dz in grid_moves(self.geodesic_reach):
            di, dj = src_i + dx, src_j + dz
            ok = (di >= 0) & (di < nx) & (dj >= 0) & (dj < nz)
            ok[ok] &= free[di[ok], dj[ok]]
            # 4 samples a cell, never on a cell corner: a diagonal (1, 1) move checks its end cells only,
            # so geodesic_reach=1 is exactly the plain 8-connected grid.
            n_samples = 4 * max(abs(dx), abs(dz)) + 1
            for k in range(1, n_samples):
                t = k / n_samples
                si = np.floor(src_i + 0.5 + t * dx).astype(int)
                sj = np.floor(src_j + 0.5 + t * dz).astype(int)
                inb = (si >= 0) & (si < nx) & (sj >= 0) & (sj < nz)
                ok &= inb
                ok[ok] &= free[si[ok], sj[ok]]
            rows.append(idx[src_i[ok], src_j[ok]]), cols.append(idx[di[ok], dj[ok]])
            vals.append(np.full(int(ok.sum()), CELL * math.hypot(dx, dz)))
        n = int(free.sum())
        graph = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
        _, labels = connected_components(graph, directed=False)
        largest = np.bincount(labels).argmax()
        reach = np.zeros((nx, nz), bool)
        reach[free] = labels == largest
        self._graph, self._idx, self.reachable = graph, idx, reach
        self._cells = np.argwhere(free)  # graph node -> cell
        self._reach_cells = np.argwhere(reach)
        # For any cell, the nearest reachable cell (agents may stand in the inflation margin).
        _, nearest = ndimage.distance_transform_edt(~reach, return_indices=True)
        self._nearest = nearest

    def cell_of(self, pos: np.ndarray) -> tuple[int, int]:
        (x0, z0), (nx, nz) = self.grid["origin"], self.grid["shape"]
        i = min(max(int((pos[0] - x0) / CELL), 0), nx - 1)
        j = min(max(int((pos[1] - z0) / CELL), 0), nz - 1)
        return i, j

    def cell_centre(self, cell) -> np.ndarray:
        (x0, z0) = self.grid["origin"]
        return np.array([x0 + (cell[0] + 0.5) * CELL, z0 + (cell[1] + 0.5) * CELL])

    # NavBackend ---------------------------------------------------------------------------------
    def sample_navigable(self, rng: np.random.Generator) -> np.ndarray:
        cell = self._reach_cells[int(rng.integers(len(self._reach_cells)))]
        return self.cell_centre(cell)

    def set_goal(self, goal: np.ndarray) -> None:
        from scipy.sparse.csgraph import dijkstra

        i, j = self.cell_of(goal)
        gi, gj = int(self._nearest[0, i, j]), int(self._nearest[1, i, j])
        dist, pred = dijkstra(self._graph, directed=False, indices=int(self._idx[gi, gj]), return_predecessors=True)
        field = np.full(self.free_shape, np.inf)
        field[self._idx >= 0] = dist
        field[~self.reachable] = np.inf
        self.distance_field, self._pred, self._goal_cell = field, pred, (gi, gj)
        self.goal = np.asarray(goal, float)

    @property
    def free_shape(self) -> tuple[int, int]:
        return tuple(self.grid["shape"])

    @property
    def free(self) -> np.ndarray:
        return self.clearance > INFLATE

    def _best_cell(self, pos: np.ndarray) -> tuple[tuple[int, int], float]:
        """The reachable cell c near ``pos`` (within QUERY_WINDOW cells) minimising field[c] + |pos - c|,
        and that sum: the geodesic from a point between cell centres (free space this close is convex)."""
        i, j = self.cell_of(pos)
        nx, nz = self.free_shape
        r = QUERY_WINDOW
        i0, i1, j0, j1 = max(i - r, 0), min(i + r + 1, nx), max(j - r, 0), min(j + r + 1, nz)
        window = self.distance_field[i0:i1, j0:j1]
        ci, cj = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1), indexing="ij")
        (x0, z0) = self.grid["origin"]
        off = np.hypot(x0 + (ci + 0.5) * CELL - pos[0], z0 + (cj + 0.5) * CELL - pos[1])
        total = window + off
        k = int(np.argmin(total))
        if math.isfinite(float(total.flat[k])):
            return (int(ci.flat[k]), int(cj.flat[k])), float(total.flat[k])
        cell = (int(self._nearest[0, i, j]), int(self._nearest[1, i, j]))  # far into the margin: snap
        return cell, float(self.distance_field[cell]) + float(np.linalg.norm(self.cell_centre(cell) - pos))

    def geodesic_distance(self, pos: np.ndarray) -> float:
        return self._best_cell(np.asarray(pos, float))[1]

    def shortest_path(self, pos: np.ndarray) -> np.ndarray:
        """Cell centres along the Dijkstra tree from the best cell near ``pos`` to the goal's, then the goal."""
        cell, d = self._best_cell(np.asarray(pos, float))
        if not math.isfinite(d):
            raise PvrError("no path: the position is not connected to the goal")
        node = int(self._idx[cell])
        goal_node = int(self._idx[self._goal_cell])
        nodes = [node]
        while node != goal_node and self._pred[node] >= 0:
            node = int(self._pred[node])
            nodes.append(node)
        pts = (self._cells[nodes] + 0.5) * CELL + np.asarray(self.grid["origin"])
        return np.vstack([pts, self.goal[None]]) if hasattr(self, "goal") else pts

    def goal_clearance(self, pos: np.ndarray, heading: float) -> float:
        d = np.array([math.cos(heading), -math.sin(heading)])  # MiniWorld: dir_vec = (cos, 0, -sin)
        (nx, nz) = self.grid["shape"]
        for step in np.arange(0.0, 20.0, CELL / 2):
            i, j = self.cell_of(pos + step * d)
            p = pos + step * d
            if not (0 <= (p[0] - self.grid["origin"][0]) / CELL < nx and 0 <= (p[1] - self.grid["origin"][1]) / CELL < nz):
                return float(step)
            if self.clearance[i, j] < 0.05:
                return float(step)
        return 20.0

    def _pose(self, pos: np.ndarray, heading: float) -> None:
        self.world.agent.pos = np.array([pos[0], 0.0, pos[1]], float)
        self.world.agent.dir = float(heading)

    def _render_obs(self) -> np.ndarray:
        # MiniWorld compiles every world's static geometry into the same OpenGL display
        # list (id 1) of the one shared context: with several worlds in a process
        # (scenes trained jointly, batched evaluation) recompile ours when another
        # world rendered last.
        global _LIST_OWNER
        if _LIST_OWNER is not self.world:
            self.world.shadow_window.switch_to()
            self.world._render_static()
            _LIST_OWNER = self.world
        return np.array(self.world.render_obs(), np.uint8)

    def render_at(self, pos: np.ndarray, heading: float) -> np.ndarray:
        a = self.world.agent
        saved = (a.pos.copy(), a.dir)
        self._pose(pos, heading)
        frame = self._render_obs()
        a.pos, a.dir = saved
        return frame

    def set_agent(self, pos: np.ndarray, heading: float) -> None:
        self._pose(pos, heading)

    def agent_pose(self) -> tuple[np.ndarray, float]:
        a = self.world.agent
        return np.array([a.pos[0], a.pos[2]], float), float(a.dir)

    def act(self, action: int) -> None:
        w = self.world
        if action == navtask.FORWARD:
            w.move_agent(self.forward_step, 0.0)
        elif action == navtask.LEFT:
            w.turn_agent(self.turn_angle_deg)
        else:
            w.turn_agent(-self.turn_angle_deg)

    def render(self) -> np.ndarray:
        return self._render_obs()

    def close(self) -> None:
        global _LIST_OWNER
        if _LIST_OWNER is self.world:
            _LIST_OWNER = None
        self.world.close()


def make_imagenav(name: str, *, image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE, forward_step: float = 0.25,
                  turn_angle: float = 10.0, fov: float = 79.0, geodesic_reach: int = GEODESIC_REACH,
                  **kwargs: Any) -> gym.Env:
    """Build ``ImageNav-<scene>``; keyword arguments: image_size, forward_step, turn_angle (degrees), fov
    (degrees), geodesic_reach (1 = 8-connected grid), and the task's (:class:`pvr.envs.navtask.ImageNavEnv`)."""
    scene = generate_scene(name[len(PREFIX):])
    hw = image_hw(image_size)
    env = navtask.make_task_env(MiniWorldBackend(scene, hw, forward_step=forward_step, turn_angle=turn_angle,
                                                 fov=fov, geodesic_reach=geodesic_reach), hw, scene=scene.name,
                                **kwargs)
    return InfoWrapper(env, navtask.true_state, navtask.success, suite=SUITE, env_name=name)


register_suite(
    SUITE,
    "ImageNav-*",
    make_imagenav,
    description="image-goal navigation on MiniWorld: seeded multi-room scenes, current + goal view, no STOP",
    examples=["ImageNav-apartment_0", "ImageNav-apartment_1", "ImageNav-room_0", "ImageNav-office_0",
              "ImageNav-hotel_0", "ImageNav-frl_apartment_0"],
    image_size=f"{DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE} (x2 views stacked: H, W, 6)",
    default_expert="shortest_path",
    probe=_probe,
    spaces="obs (64, 64, 6) uint8 = current view + goal view; action Discrete(3) forward/left/right",
)

"""State from /tf and /tf_static by frame: `{name: hand_x, tf: {parent: base_link, child: tool0},
field: translation.x}` in a bag mapping (docs/bag_conversion.md, "Poses from /tf").

Every transform of every tf2_msgs/TFMessage on /tf (dynamic) and /tf_static (static) is kept by
its (parent, child) frames, whatever its position in the message, stamped by ITS header (the
receive time with `stamps: receive`, or where the stamp is zero). The pose of `child` in
`parent` is composed along the frame tree (child -> ... -> common ancestor <- ... <- parent),
static links from /tf_static included, at every stamp of a dynamic link on the path (each link
at its latest value <= that stamp). Fields: translation.x|y|z and rotation.x|y|z|w (the
quaternion of the composed rotation, xyzw as geometry_msgs/Quaternion; a single link gives the
message's own quaternion unchanged).
"""
from __future__ import annotations

import numpy as np

from lara_policy.common.errors import ConvertError

TF_TOPIC, TF_STATIC_TOPIC = "/tf", "/tf_static"
TF_FIELDS = ("translation.x", "translation.y", "translation.z", "rotation.x", "rotation.y", "rotation.z",
             "rotation.w")


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz], -1)


def _qconj(q: np.ndarray) -> np.ndarray:
    return q * np.array([-1.0, -1.0, -1.0, 1.0])


def _qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    qv = np.concatenate([v, np.zeros(v.shape[:-1] + (1,))], -1)
    return _qmul(_qmul(q, qv), _qconj(q))[..., :3]


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 7) [xyz, qxyzw] transforms: a * b."""
    return np.concatenate([a[..., :3] + _qrot(a[..., 3:], b[..., :3]), _qmul(a[..., 3:], b[..., 3:])], -1)


def _inverse(a: np.ndarray) -> np.ndarray:
    qi = _qconj(a[..., 3:])
    return np.concatenate([-_qrot(qi, a[..., :3]), qi], -1)


def _frame(name: str) -> str:
    return str(name).lstrip("/")


class TfBuffer:
    """The transforms of one bag, by (parent, child) link."""

    def __init__(self):
        self.links: dict[tuple[str, str], dict] = {}     # (parent, child) -> {static, t: [], v: []}

    def add(self, msg, static: bool, t_receive: float, use_header: bool) -> None:
        for tr in msg.transforms:
            key = (_frame(tr.header.frame_id), _frame(tr.child_frame_id))
            st = tr.header.stamp
            ns = int(st.sec) * 1_000_000_000 + int(st.nanosec)
            t = ns * 1e-9 if use_header and ns > 0 else t_receive
            x, r = tr.transform.translation, tr.transform.rotation
            link = self.links.setdefault(key, {"static": static, "t": [], "v": []})
            link["static"] = link["static"] and static
            link["t"].append(t)
            link["v"].append((x.x, x.y, x.z, r.x, r.y, r.z, r.w))

    def _parents(self) -> dict[str, str]:
        parent: dict[str, str] = {}
        for p, c in self.links:
            if c in parent and parent[c] != p:
                raise ConvertError(f"frame '{c}' has two parents in /tf ('{parent[c]}' and '{p}'): not a tree")
            parent[c] = p
        return parent

    def _path_up(self, frame: str, parent: dict[str, str]) -> list[str]:
        out = [frame]
        while out[-1] in parent and len(out) <= len(parent) + 1:
            out.append(parent[out[-1]])
        return out

    def series(self, parent_frame: str, child_frame: str, where: str) -> tuple[np.ndarray, np.ndarray]:
        """(times (N,), transforms (N, 7)) of child in parent; ConvertError when the frames are
        not connected by the bag's /tf and /tf_static."""
        pf, cf = _frame(parent_frame), _frame(child_frame)
        parents = self._parents()
        up_c, up_p = self._path_up(cf, parents), self._path_up(pf, parents)
        common = next((f for f in up_c if f in up_p), None)
        if common is None:
            frames = sorted({f for k in self.links for f in k})
            raise ConvertError(f"{where}: no chain of transforms from '{pf}' to '{cf}' in /tf and /tf_static "
                               f"(frames there: {', '.join(frames) or 'none'})")
        down_c = [(up_c[i + 1], up_c[i]) for i in range(up_c.index(common))][::-1]     # common -> child
        down_p = [(up_p[i + 1], up_p[i]) for i in range(up_p.index(common))][::-1]     # common -> parent
        links = {k: self.links[k] for k in down_c + down_p}
        dyn = [k for k, v in links.items() if not v["static"]]
        if not dyn:
            raise ConvertError(f"{where}: '{pf}' -> '{cf}' is static (only in /tf_static): a constant is no state")
        arrays = {}
        for k, v in links.items():
            t = np.asarray(v["t"], np.float64)
            order = np.argsort(t, kind="stable")
            arrays[k] = (t[order], np.asarray(v["v"], np.float64)[order])
        times = np.unique(np.concatenate([arrays[k][0] for k in dyn]))
        ok = np.ones(len(times), bool)

        def at(k):
            t, v = arrays[k]
            if links[k]["static"]:
                return np.broadcast_to(v[-1], (len(times), 7))
            i = np.searchsorted(t, times, side="right") - 1
            ok[i < 0] = False
            return v[np.maximum(i, 0)]

        def chain(path):
            T = np.tile(np.array([0, 0, 0, 0, 0, 0, 1.0]), (len(times), 1))
            for k in path:
                T = _compose(T, at(k))
            return T

        a_child, a_parent = chain(down_c), chain(down_p)
        rel = a_child if not down_p else _compose(_inverse(a_parent), a_child)
        return times[ok], rel[ok]


def tf_value_index(field: str, where: str) -> int:
    if field not in TF_FIELDS:
        raise ConvertError(f"{where}: tf field '{field}' unknown (one of {', '.join(TF_FIELDS)})")
    return TF_FIELDS.index(field)

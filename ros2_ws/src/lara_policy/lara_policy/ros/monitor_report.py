"""The report of `lara monitor ros` (ros/monitor_run.py): the in-sim reference it is compared with
(`lara eval sim --fault ... --monitor`'s results.json), the summary of its episode records and
OUT/table.md. ROS-free: the records are plain dicts."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

METAWORLD_DT = 0.0125          # Meta-World v3 frame_skip x timestep: the step of `lara eval sim`
COAST_STEPS = 15               # sim steps a jammed Meta-World hand still coasts (mocap weld lag)


def _p(values, q):
    return round(float(np.percentile(values, q)), 3) if values else None


def in_sim_results(root: Path, model: str, fault: str) -> Path:
    """The newest in-sim table of this fault: experiments/monitor_eval.sh's four-detector run when
    there is one (the jammed-arm fault of sim/faults.py since 2026-12-07), else the older one."""
    for folder in ("four_detectors", ""):
        path = root / "results" / "monitor" / model / folder / fault / "results.json"
        if path.is_file():
            return path
    return root / "results" / "monitor" / model / fault / "results.json"


def in_sim_reference(path: Path) -> dict:
    """The `lara eval sim --fault ... --monitor` run's LAM (and camera detector) figures and its
    per-layout outcomes (delay_s: the LAM's, camera_delay_s: the camera detector's)."""
    if not path.is_file():
        return {}
    d = json.loads(path.read_text())
    per = {}
    for e in d.get("episodes", []):
        onset, row = e.get("fault_onset"), {"onset_step": e.get("fault_onset")}
        for det, key in (("lam", "delay_s"), ("camera", "camera_delay_s")):
            alarms = [a for a in e.get("monitor", {}).get(det, {}).get("alarms", []) if onset is not None and a >= onset]
            row[key] = round((alarms[0] - onset) * METAWORLD_DT, 4) if alarms else None
        per[f"{e['task']}/{e['seed']}"] = row
    mon = d.get("config", {}).get("monitor", {})
    return {"file": repo_relative(path), "lam": d.get("monitor", {}).get("lam", {}),
            "camera": d.get("monitor", {}).get("camera", {}), "threshold": mon.get("threshold"),
            "camera_threshold": mon.get("camera_threshold"), "debounce": mon.get("debounce"), "episodes": per}


def repo_relative(path) -> str:
    """`path` relative to the repository root ($LARA_ROOT) when it lies inside it, else as given."""
    root = os.environ.get("LARA_ROOT", "")
    p = os.path.abspath(str(path))
    if root and (p == os.path.abspath(root) or p.startswith(os.path.abspath(root) + os.sep)):
        return os.path.relpath(p, root)
    return str(path)


def summarise(records: list[dict], ref: dict) -> dict:
    faults = [r for r in records if r["kind"] == "fault" and r["fault_reached"]]
    det = [r for r in faults if r["alarm_s"] is not None]
    held = [r for r in faults if r["hold_s"] is not None]
    missed = [r for r in faults if r["alarm_s"] is None and r["hold_s"] is None]   # nothing caught them
    normal_steps = sum(r["steps"] for r in records if r["kind"] == "none") + \
        sum(r["onset_step"] - 1 for r in faults)
    normal_wall = sum(r["wall_s"] for r in records if r["kind"] == "none") + sum(r["onset_s"] for r in faults)
    fa = sum(r["false_alarms"] for r in records)
    p90 = {m: ref.get(m, {}).get("detection_delay_s_p90") for m in ("lam", "camera")}
    ref_p90 = lambda r: p90.get(r.get("hold_monitor") or "lam")   # noqa: E731 - the in-sim p90 of the monitor that held
    within = [r["hold_delay_sim_s"] <= ref_p90(r) for r in held if ref_p90(r)]
    by_monitor = {}
    for m in sorted({m for r in faults for m in r.get("alarms_by", {})} |
                    {m for r in records for m in r.get("false_alarms_by", {})}):
        got = [r["alarms_by"][m] for r in faults if m in r.get("alarms_by", {})]
        by_monitor[m] = {"detected": len(got), "first": sum(r.get("first_alarm_monitor") == m for r in faults),
                         "held_by": sum(r.get("hold_monitor") == m for r in held),
                         "alarm_delay_wall_s_p50": _p([g["delay_wall_s"] for g in got], 50),
                         "alarm_delay_sim_s_p50": _p([g["delay_sim_s"] for g in got], 50),
                         "alarm_delay_steps_max": max((g["delay_steps"] for g in got), default=None),
                         "false_alarms": sum(r.get("false_alarms_by", {}).get(m, 0) for r in records)}
    return {
        "fault_episodes": len(faults), "detected": len(det), "held": len(held),
        "detection_rate": round(len(det) / len(faults), 3) if faults else None,
        "alarm_delay_wall_s_p50": _p([r["alarm_delay_wall_s"] for r in det], 50),
        "alarm_delay_sim_s_p50": _p([r["alarm_delay_sim_s"] for r in det], 50),
        "alarm_delay_sim_s_p90": _p([r["alarm_delay_sim_s"] for r in det], 90),
        "hold_delay_wall_s_p50": _p([r["hold_delay_wall_s"] for r in held], 50),
        "hold_delay_sim_s_p50": _p([r["hold_delay_sim_s"] for r in held], 50),
        # a hold by command_node's own not-following watch has no monitor alarm before it
        "alarm_to_hold_ms_p50": _p([r["alarm_to_hold_ms"] for r in held if r["alarm_to_hold_ms"] is not None], 50),
        "alarm_to_hold_ms_max": max((r["alarm_to_hold_ms"] for r in held if r["alarm_to_hold_ms"] is not None),
                                    default=None),
        "held_without_alarm": sum(r["alarm_to_hold_ms"] is None for r in held),
        "held_within_in_sim_p90": sum(within) if within else None,
        "held_with_in_sim_p90": len(within),     # holds whose monitor has an in-sim p90 to compare with
        "by_monitor": by_monitor,
        "moving_ticks_after_hold": sum(r["moving_ticks_after_hold"] for r in held),
        "missed": len(missed),
        "missed_commanding_share_p50": _p([r["commanding_share_while_frozen"] for r in missed
                                           if r["commanding_share_while_frozen"] is not None], 50),
        "missed_hand_path_after_onset_m_max": max((r["hand_path_after_onset_m"] for r in missed), default=None),
        "missed_hand_path_after_coast_m_max": max((r["hand_path_after_coast_m"] for r in missed), default=None),
        "missed_commanded_path_m_p50": _p([r["commanded_path_while_frozen_m"] for r in missed], 50),
        "missed_frozen_unheld_s_total": round(sum(r["frozen_s_unheld"] for r in missed), 1),
        "normal_episodes": sum(r["kind"] == "none" for r in records),
        "false_alarms": fa, "false_holds": sum(bool(r["false_holds"]) for r in records),
        "normal_sim_minutes": round(normal_steps * METAWORLD_DT / 60.0, 2),
        "normal_wall_minutes": round(normal_wall / 60.0, 2),
        "other_faults": sorted({f for r in records for f in r["other_faults"]}),
        "fault_ticks": {k: sum(r["fault_ticks"].get(k, 0) for r in records)
                        for k in sorted({k for r in records for k in r["fault_ticks"]})},
        "ticks": sum(r["ticks"] for r in records),
        "surprises_nan": sum(r["surprise_nan"] for r in records),
        "surprises": sum(len(r["surprises"]) for r in records),
    }


def _f(v, p=2):
    return "-" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))


def _monitors_text(settings: dict) -> str:
    mons, cam = settings.get("monitors", ["lam"]), settings.get("camera", {})
    text = "" if "lam" in mons else "; policy_node's LAM monitor off"
    if "camera" in mons:
        text += (f"; camera_watch_node: stillness threshold {cam['threshold']:.4f}, debounce {cam['debounce']}, window "
                 f"{cam['window_frames']} frames, hand path >= {cam['min_moved_m']:g} m "
                 f"({settings.get('camera_threshold_source', '')})")
    return text


def _in_sim_text(r: dict, ref: dict, mons: list[str]) -> str:
    same = ref.get("episodes", {}).get(f"{r['task']}/{r['seed']}")
    if same is None:
        return "-"
    out = []
    for m, key in (("lam", "delay_s"), ("camera", "camera_delay_s")):
        if m in mons and (m == "lam" or ref.get("camera")):
            d = same.get(key)
            out.append(("missed" if d is None else f"alarm +{d:.2f} s") if mons == ["lam"]
                       else f"{m} " + ("missed" if d is None else f"+{d:.2f} s"))
    return ", ".join(out) or "-"


def table(records: list[dict], summary: dict, settings: dict, ref: dict, command: str) -> str:
    lam, mons = ref.get("lam", {}), settings.get("monitors", ["lam"])
    title = "The LAM fault monitor" if mons == ["lam"] else "Fault monitors (" + ", ".join(mons) + ")"
    lines = [
        f"# {title} through ROS: {settings['fault']} on {settings['model_id']}",
        "",
        f"Command: `{command}`",
        "",
        f"sim_node + policy_node + command_node{' + camera_watch_node' if 'camera' in mons else ''} over DDS in one "
        f"process ({settings['config']}, "
        f"{settings['control_rate_hz']:g} Hz: one sim step = {1e3 / settings['control_rate_hz']:.0f} ms wall, "
        f"{METAWORLD_DT * 1e3:.1f} ms Meta-World time); monitor threshold {settings['threshold']:.4f}, debounce "
        f"{settings['debounce']} ({settings['threshold_source']}){_monitors_text(settings)}; onset step uniform in "
        f"[{settings['fault_onset'][0]}, {settings['fault_onset'][1]}] per layout (fault_seed {settings['fault_seed']}); "
        f"command_node hold_on_monitor_alarm true"
        + (f", max_not_following_s {settings['not_following_s']:g} (hand not following: a hold too)"
           if settings.get("not_following_s") else "") + ". Times from arming, on the ROS clock; 'sim s' = sim steps x 12.5 ms, "
        "the unit of `lara eval sim --monitor`.",
        "",
        "| task | seed | onset step (s) | alarm s | hold s | onset->alarm wall s / sim s | onset->hold wall s / sim s "
        "| alarm->hold ms | moving ticks after hold | commanded while frozen, unheld | hand moved after onset m (after coast) "
        "| max surprise after onset | in sim, same layout |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in records if r["kind"] == "fault"):
        same_txt = _in_sim_text(r, ref, mons)
        who = lambda m: f" ({m})" if m and mons != ["lam"] else ""   # noqa: E731 - which monitor, when several
        unheld = ("-" if r["hold_s"] is not None or r["commanding_share_while_frozen"] is None else
                  f"{r['commanding_share_while_frozen']:.0%} of ticks for {r['frozen_s_unheld']:.1f} s, "
                  f"{r['commanded_path_while_frozen_m']:.2f} m")
        lines.append(
            f"| {r['task']} | {r['seed']} | {_f(r['onset_step'])} ({_f(r['onset_s'])}) | {_f(r['alarm_s'])}"
            f"{who(r.get('first_alarm_monitor'))} | {_f(r['hold_s'])}{who(r.get('hold_monitor'))} | {_f(r.get('alarm_delay_wall_s'))} / {_f(r.get('alarm_delay_sim_s'))} | "
            f"{_f(r.get('hold_delay_wall_s'))} / {_f(r.get('hold_delay_sim_s'))} | {_f(r.get('alarm_to_hold_ms'), 1)} | "
            f"{r['moving_ticks_after_hold'] if r['hold_s'] is not None else '-'} | {unheld} | "
            f"{_f(r['hand_path_after_onset_m'], 3)} ({_f(r['hand_path_after_coast_m'], 3)}) | {_f(r['surprise_max_after_onset'], 3)} | {same_txt} |")
    s = summary
    still = "camera" in mons
    lines += ["", "Fault-free episodes (the same graph without the fault):", "",
              "| task | seed | sim steps | wall s | alarms | holds | max surprise |" + (" max stillness |" if still else "")
              + " success |", "|---|---|---|---|---|---|---|---|" + ("---|" if still else "")]
    for r in (r for r in records if r["kind"] == "none"):
        top = max((v for _, v in r["surprises"] if v is not None), default=None)
        lines.append(f"| {r['task']} | {r['seed']} | {r['steps']} | {r['wall_s']:.1f} | {r['false_alarms']} | "
                     f"{int(bool(r['false_holds']))} | {_f(top, 3)} |"
                     + (f" {_f(r.get('stillness_max_before_onset'), 3)} |" if still else "") + f" {r['success']} |")
    missed = (f"- missed faults: command_node stayed armed and kept commanding motion in p50 "
              f"{_f(s['missed_commanding_share_p50'])} of its ticks after the onset (p50 "
              f"{_f(s['missed_commanded_path_m_p50'])} m of hand motion commanded per episode) while the hand, after "
              f"its {COAST_STEPS}-step coast, moved at most {_f(s['missed_hand_path_after_coast_m_max'], 4)} m (at most "
              f"{_f(s['missed_hand_path_after_onset_m_max'], 4)} m with the coast): a jammed arm commanded for "
              f"{_f(s['missed_frozen_unheld_s_total'], 1)} s in all with nothing holding it "
              + ("(no monitor alarm, and command_node's not-following watch did not hold)." if settings.get("not_following_s")
                 else "(only the LAM monitor is switched on here; command_node's max_not_following_s, off by default, "
                      "would catch it: the hand detector of the in-sim table)."))
    if settings["fault"] == "frozen-arm" and s["fault_episodes"] and not s["missed"]:
        missed = "- missed faults: none (every jammed arm raised an alarm or was held)."
    if settings["fault"] != "frozen-arm" and s["detected"] == s["fault_episodes"]:
        missed = "- missed faults: none."
    elif settings["fault"] != "frozen-arm":
        missed = (f"- missed faults: command_node stayed armed and kept commanding motion in p50 "
                  f"{_f(s['missed_commanding_share_p50'])} of its ticks after the onset for "
                  f"{_f(s['missed_frozen_unheld_s_total'], 1)} s in all (the policy acting on what the camera shows; "
                  f"the hand moved up to {_f(s['missed_hand_path_after_onset_m_max'], 3)} m after the onset).")
    per = [f"{m} detected {v['detected']}/{s['fault_episodes']} (first {v['first']}, held by it {v['held_by']}), "
           f"onset->alarm p50 {_f(v['alarm_delay_wall_s_p50'])} s wall = {_f(v['alarm_delay_sim_s_p50'])} sim s "
           f"(at most {_f(v['alarm_delay_steps_max'])} steps), false alarms {v['false_alarms']}"
           for m, v in s.get("by_monitor", {}).items()]
    cam = ref.get("camera", {})
    lines += [
        "", "Summary:", "",
        f"- detected {s['detected']}/{s['fault_episodes']} ({_f(s['detection_rate'])}); held {s['held']}; "
        f"onset->alarm p50 {_f(s['alarm_delay_wall_s_p50'])} s wall = {_f(s['alarm_delay_sim_s_p50'])} sim s "
        f"(p90 {_f(s['alarm_delay_sim_s_p90'])} sim s); onset->hold p50 {_f(s['hold_delay_wall_s_p50'])} s wall = "
        f"{_f(s['hold_delay_sim_s_p50'])} sim s; alarm->hold p50 {_f(s['alarm_to_hold_ms_p50'], 1)} ms "
        f"(max {_f(s['alarm_to_hold_ms_max'], 1)})"
        + (f"; {s['held_without_alarm']} held by command_node's not-following watch without a monitor alarm"
           if s.get("held_without_alarm") else "")
        + f"; motion commanded after a hold: {s['moving_ticks_after_hold']} ticks.",
        f"- in sim (`lara eval sim --monitor`, {ref.get('file', 'none found')}, threshold {_f(ref.get('threshold'), 4)}, "
        f"debounce {_f(ref.get('debounce'))}): LAM detected {_f(lam.get('detected'))}/{_f(lam.get('fault_episodes'))}, "
        f"p50 {_f(lam.get('detection_delay_s_p50'))} s, p90 {_f(lam.get('detection_delay_s_p90'))} s"
        + (f"; camera detector (threshold {_f(ref.get('camera_threshold'), 4)}) detected {_f(cam.get('detected'))}/"
           f"{_f(cam.get('fault_episodes'))}, p50 {_f(cam.get('detection_delay_s_p50'))} s, p90 "
           f"{_f(cam.get('detection_delay_s_p90'))} s" if "camera" in mons and cam else
           "; no camera-detector figures in it" if "camera" in mons else "")
        + f"; holds through ROS within the p90 of the monitor that held: {_f(s['held_within_in_sim_p90'])}/"
        f"{s.get('held_with_in_sim_p90', s['held'])}" + (f" (of {s['held']} holds: the others' monitor has no in-sim "
                                                        "figure)" if s.get("held_with_in_sim_p90", s["held"]) < s["held"]
                                                        else "") + ".",
    ] + ([f"- by monitor: {'; '.join(per)}."] if mons != ["lam"] and per else []) + [
        missed,
        f"- false alarms {s['false_alarms']} (holds {s['false_holds']}) over {s['normal_sim_minutes']} sim min "
        f"({s['normal_wall_minutes']} wall min) of normal operation ({s['normal_episodes']} fault-free episodes + the "
        f"pre-onset part of the fault episodes); command_node ticks in FAULT: "
        f"{', '.join(f'{k} {v}' for k, v in s['fault_ticks'].items()) or 'none'} of {s['ticks']}; "
        f"surprises not computed (frame too late): {s['surprises_nan']}/{s['surprises']}.",
    ]
    return "\n".join(lines) + "\n"

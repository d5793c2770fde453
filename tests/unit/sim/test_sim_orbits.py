"""Keplerian orbits: the solver, elements ↔ state, and propagation against a numerical two-body integration."""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp

from pachon.pipelines.sim.orbits import GM_SUN, Orbits, elements_from_state, solve_kepler


def _orbits() -> Orbits:
    rng = np.random.default_rng(3)
    n = 6
    return Orbits(
        id=np.arange(n, dtype=np.int64),
        a=rng.uniform(1.0, 3.3, n),
        e=np.array([0.01, 0.05, 0.2, 0.4, 0.6, 0.9]),
        incl=rng.uniform(0, 30, n),
        node=rng.uniform(0, 360, n),
        argperi=rng.uniform(0, 360, n),
        mean_anomaly=rng.uniform(0, 360, n),
        epoch=np.full(n, 61000.0),
        h_r=np.full(n, 18.0),
        g=np.full(n, 0.15),
        kind=np.array(["MBA"] * n),
    )


def test_kepler_solver_satisfies_keplers_equation() -> None:
    m = np.linspace(0, 2 * math.pi, 50)
    for e in (0.0, 0.3, 0.7, 0.95):
        ecc = solve_kepler(m, np.full_like(m, e))
        assert np.allclose(ecc - e * np.sin(ecc), np.mod(m, 2 * math.pi), atol=1e-12)


def test_elements_state_round_trip() -> None:
    o = _orbits()
    r, v = o.state(o.epoch)
    el = elements_from_state(r, v)
    assert np.allclose(el["a"], o.a, rtol=1e-10)
    assert np.allclose(el["e"], o.e, atol=1e-10)
    assert np.allclose(np.degrees(el["incl"]), o.incl, atol=1e-8)
    # angles modulo 360 (compare the argument of latitude ω+M, well defined for near-circular orbits)
    d_node = (np.degrees(el["node"]) - o.node + 180) % 360 - 180
    assert np.allclose(d_node, 0, atol=1e-7)
    lon = np.degrees(el["argperi"] + el["mean_anomaly"]) - (o.argperi + o.mean_anomaly)
    assert np.allclose((lon + 180) % 360 - 180, 0, atol=1e-6)


def test_kepler_propagation_matches_numerical_two_body() -> None:
    """Independent check: integrate r¨ = −GM r/|r|³ from the epoch state for 40 days."""
    o = _orbits()
    r0, v0 = o.state(o.epoch)
    t_end = 40.0
    r1, v1 = o.state(o.epoch + t_end)
    for k in range(len(o)):

        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            rr = y[:3]
            return np.concatenate([y[3:], -GM_SUN * rr / np.linalg.norm(rr) ** 3])

        sol = solve_ivp(
            rhs, (0, t_end), np.concatenate([r0[k], v0[k]]), rtol=1e-12, atol=1e-14, method="DOP853"
        )
        assert np.linalg.norm(sol.y[:3, -1] - r1[k]) < 1e-9, k  # AU (≈ 150 m)
        assert np.linalg.norm(sol.y[3:, -1] - v1[k]) < 1e-11, k


def test_energy_and_angular_momentum_conserved() -> None:
    o = _orbits()
    for dt in (0.0, 100.0, 1000.0):
        r, v = o.state(o.epoch + dt)
        energy = 0.5 * np.sum(v * v, 1) - GM_SUN / np.linalg.norm(r, axis=1)
        assert np.allclose(energy, -GM_SUN / (2 * o.a), rtol=1e-10)

"""The users of benchmarks/load.py: locust runs this file in its own process (gevent's
monkey-patching stays there, away from the server and the benchmark's driver).

Each simulated user browses the explorer as a person does: the latent list, a latent's page, a
user's page, and steering (a JSON POST from the explorer's own page, so with its Origin), with a
think time between clicks. The run and its sizes come from ``LOAD_*`` variables set by load.py.
"""

from __future__ import annotations

import json
import os
import random

from locust import FastHttpUser, between, task

RUN_ID = os.environ["LOAD_RUN_ID"]
N_USERS = int(os.environ["LOAD_N_USERS"])
N_LATENTS = int(os.environ["LOAD_N_LATENTS"])
WAIT_MIN = float(os.environ.get("LOAD_WAIT_MIN", "0.5"))
WAIT_MAX = float(os.environ.get("LOAD_WAIT_MAX", "1.5"))
SORTS = ("confidence", "llm_confidence", "density", "id")
PAGE = {"Accept": "text/html,application/xhtml+xml"}


class ExplorerUser(FastHttpUser):
    wait_time = between(WAIT_MIN, WAIT_MAX)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.steer_headers = {
            "Content-Type": "application/json",
            "Origin": self.host.rstrip("/"),  # same-origin, as the explorer's own fetch sends
        }

    @task(2)
    def latent_list(self) -> None:
        query = f"?_sort={self.rng.choice(SORTS)}&_page={self.rng.randint(1, 5)}"
        self.client.get(f"/runs/{RUN_ID}/latents{query}", headers=PAGE, name="latent list")

    @task(3)
    def latent_page(self) -> None:
        idx = self.rng.randrange(N_LATENTS)
        self.client.get(f"/runs/{RUN_ID}/latents/{idx}", headers=PAGE, name="latent page")

    @task(2)
    def user_page(self) -> None:
        idx = self.rng.randrange(N_USERS)
        self.client.get(f"/runs/{RUN_ID}/users/{idx}", headers=PAGE, name="user page")

    @task(3)
    def steer(self) -> None:
        latents = self.rng.sample(range(N_LATENTS), self.rng.randint(1, 3))
        body = {
            "edits": [{"latent": j, "value": round(self.rng.uniform(-3, 3), 3)} for j in latents],
            "mode": "replace" if self.rng.random() < 0.3 else "error_preserving",
        }
        self.client.post(
            f"/api/runs/{RUN_ID}/users/{self.rng.randrange(N_USERS)}/steer",
            data=json.dumps(body),
            headers=self.steer_headers,
            name="steer",
        )

"""The UnifiedReward client against a stub OpenAI-compatible server on 127.0.0.1 (never any other address)."""

import base64
import io
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from evaluators.rewards import UnifiedReward, UnifiedRewardError
from tests.evaluators.chat_stub import ChatStub


def Stub(replies):
    """Serves queued (status, reply text) pairs in order."""
    queue = list(replies)
    return ChatStub(lambda body: queue.pop(0))


@pytest.fixture
def stub():
    servers = []

    def start(replies):
        servers.append(Stub(replies))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


ACS_ANSWER = "Alignment Score (1-5): 3.5\nCoherence Score (1-5): 4\nStyle Score (1-5): 2.25"


def test_scores_are_parsed_and_the_request_is_greedy_with_a_png(stub):
    server = stub([(200, ACS_ANSWER), (200, "Alignment Score (1-5): 1.0")])
    reward = UnifiedReward(server.url, "alignment", timeout_s=5)
    images = torch.rand(2, 3, 16, 16)
    scores = reward(images, ["a cat", "a dog"])
    assert scores.tolist() == [3.5, 1.0] and scores.dtype == torch.float32
    assert not reward.differentiable
    path, body = server.requests[0]
    assert path == "/v1/chat/completions" and body["temperature"] == 0.0
    image_part, text_part = body["messages"][0]["content"]
    assert "Text Caption: [a cat]" in text_part["text"] and "Alignment Score (1-5): X" in text_part["text"]
    header, data = image_part["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
    assert np.abs(decoded / 255.0 - images[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("dimension,expected", [("coherence", 4.0), ("style", 2.25)])
def test_other_dimensions(stub, dimension, expected):
    server = stub([(200, ACS_ANSWER)])
    assert UnifiedReward(server.url, dimension)(torch.rand(1, 3, 8, 8), ["x"]).item() == expected


def test_final_score_prompt(stub):
    server = stub([(200, "cat (object): 1\nFinal Score: 4.5")])
    assert UnifiedReward(server.url, "final")(torch.rand(1, 3, 8, 8), ["x"]).item() == 4.5
    assert "Final Score:" in server.requests[0][1]["messages"][0]["content"][1]["text"]


def test_server_errors_are_retried_with_backoff(stub):
    server = stub([(503, ""), (500, ""), (200, "Alignment Score (1-5): 2")])
    reward = UnifiedReward(server.url, retries=2, backoff_s=0.01)
    assert reward(torch.rand(1, 3, 8, 8), ["x"]).item() == 2.0
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(stub):
    server = stub([(400, ""), (200, "Alignment Score (1-5): 2")])
    with pytest.raises(UnifiedRewardError, match="HTTP 400"):
        UnifiedReward(server.url, retries=3, backoff_s=0.01)(torch.rand(1, 3, 8, 8), ["x"])
    assert len(server.requests) == 1


def test_unparsable_reply_names_the_server(stub):
    server = stub([(200, "I like it.")])
    with pytest.raises(UnifiedRewardError, match=server.url) as error:
        UnifiedReward(server.url)(torch.rand(1, 3, 8, 8), ["x"])
    assert "I like it" in str(error.value)


def test_absent_server_is_one_clear_error():
    with socket.socket() as s:  # a free local port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(UnifiedRewardError, match=rf"{url}/v1/chat/completions: unreachable .* 3 attempt"):
        UnifiedReward(url, retries=2, backoff_s=0.01, timeout_s=2)(torch.rand(1, 3, 8, 8), ["x"])

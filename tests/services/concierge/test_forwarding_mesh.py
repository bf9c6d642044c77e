"""The concierge's side of Tier 2 against the real escalation service (its servicers on a
real gRPC server, SQLite): the AI hands over, the customer's follow-up reaches the agent's
thread once (however often it is retried), the agent's reply shows in GetConversation, and
the conversation has one handoff."""

from __future__ import annotations

from pathlib import Path

from aftercare.concierge.v1 import concierge_pb2
from aftercare.escalation.v1 import escalation_pb2
from aftercare.type.v1 import conversation_pb2
from tests.services.concierge.test_concierge import CLOSED, FakeLlm, _refuse, converse, history, make, request
from tests.services.escalation.conftest import running_stub, settings_for


async def test_a_conversation_with_the_real_escalation_service(tmp_path: Path) -> None:
    async with running_stub(settings_for(tmp_path / "escalation")) as escalation:
        rig = make(FakeLlm(fail=_refuse), f"sqlite:///{tmp_path / 'concierge.db'}", gate=CLOSED)
        rig.servicer._escalation = escalation

        handed = await converse(rig, request("My invoice shows a charge I don't recognise"))
        assert handed.decision == concierge_pb2.DECISION_ESCALATED and handed.handoff_id
        assert handed.handoff_reference and handed.handoff_reference in handed.reply
        assert "?" not in handed.reply

        follow_up = await converse(rig, request("It was on the 3rd", client_message_id="msg-2"))
        assert follow_up.decision == concierge_pb2.DECISION_FORWARDED and follow_up.reply == ""
        assert (follow_up.handoff_id, follow_up.handoff_reference) == (handed.handoff_id, handed.handoff_reference)
        # A retry of the same message is one thread message.
        await converse(rig, request("It was on the 3rd", client_message_id="msg-2"))

        await escalation.SubmitAgentReply(escalation_pb2.SubmitAgentReplyRequest(
            tenant_id="demo", handoff_id=handed.handoff_id, agent_id="agent-7", agent_name="Dana",
            final_text="Thanks, I found it and refunded the charge.", client_message_id="reply-1",
        ))
        messages = (await history(rig)).conversation.messages
        assert [conversation_pb2.Role.Name(m.role) for m in messages] == [
            "ROLE_CUSTOMER", "ROLE_ASSISTANT", "ROLE_CUSTOMER", "ROLE_AGENT",
        ]
        assert messages[-1].text == "Thanks, I found it and refunded the charge."
        assert messages[-1].author_name == "Dana"

        thread = await escalation.ListConversationMessages(escalation_pb2.ListConversationMessagesRequest(
            tenant_id="demo", conversation_id="c1", customer_id="u1",
        ))
        customer_texts = [m.message.text for m in thread.messages if m.message.role == conversation_pb2.ROLE_CUSTOMER]
        assert customer_texts.count("It was on the 3rd") == 1
        handoffs = await escalation.ListHandoffs(escalation_pb2.ListHandoffsRequest(tenant_id="demo"))
        assert len(handoffs.handoffs) == 1, "one open handoff per conversation"

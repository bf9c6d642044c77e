"""A long answer unit is cut along its own structure (services/concierge/excerpts.py)."""

from __future__ import annotations

from services.concierge.excerpts import MAX_BLOCK_CHARS, answer_excerpt, sections

EXPORT_GUIDE = """### Step 1: Prepare BigQuery

1. In the Google Cloud console, create a dataset, for example `beacon_events`, in the location of your choice.
2. Open IAM and grant the Beacon service account `beacon-export@example` these roles on the project:
   - BigQuery Data Editor (on the dataset)
   - BigQuery Job User (on the project)

### Step 2: Configure the destination

1. In Beacon go to Settings > Workspace > Data Exports > New destination > BigQuery.
2. Enter the project ID and dataset name.
3. Choose the schedule (hourly or daily).
4. Click Test connection, then Save.

Beacon creates a table named `events` that is partitioned by day on the `event_time` column and clustered by
`event_name`."""

RETENTION = """Raw events are kept for the retention period of the organization's plan, measured from the event time:

| Plan | Raw event retention |
|---|---|
| Free | 90 days |
| Business | 25 months |

Events older than the retention period are deleted in a daily job that runs at 04:00 UTC every night."""

LIMITS = """### REST requests per minute, per workspace

- Free: 60
- Team: 600

### Batch endpoint for events

- At most 500 events per request (since 4.3.0, previously 1,000)
- At most 1 MB request body"""


def test_a_lead_in_keeps_the_list_it_introduces() -> None:
    reply = answer_excerpt("Which roles does the Beacon service account need in IAM?", EXPORT_GUIDE)
    assert "BigQuery Data Editor" in reply and "BigQuery Job User" in reply
    # The step itself, not the whole guide.
    assert "Test connection" not in reply


def test_a_short_procedure_answers_with_all_its_steps() -> None:
    reply = answer_excerpt("Can the export run hourly?", EXPORT_GUIDE)
    assert reply.startswith("1. In Beacon go to Settings") and reply.endswith("Click Test connection, then Save.")
    # A task's subheading stands for its steps and what follows them.
    task = answer_excerpt("How do I configure the destination?", EXPORT_GUIDE)
    assert task.startswith("1. In Beacon go to Settings") and task.endswith("`event_name`.")


def test_a_lead_in_keeps_its_table_and_a_paragraph_stands_alone() -> None:
    table = answer_excerpt("How long are raw events kept on the Business plan?", RETENTION)
    assert "| Business | 25 months |" in table and "04:00 UTC" not in table
    daily = answer_excerpt("When does the daily deletion job run?", RETENTION)
    assert daily.startswith("Events older than") and "|" not in daily


def test_a_subheading_stands_for_what_is_under_it() -> None:
    reply = answer_excerpt("batch endpoint limits", LIMITS)
    assert "At most 500 events per request" in reply and "1 MB" in reply and "Free: 60" not in reply


def test_a_block_too_long_to_send_is_cut_to_its_best_sentence() -> None:
    filler = " ".join(f"Step {n} of the setup wizard shows the network page." for n in range(30))
    text = f"{filler} To reset the router, hold the reset button for ten seconds. The lights then blink green."
    assert len(text) > MAX_BLOCK_CHARS
    reply = answer_excerpt("How do I reset the router?", text)
    assert reply == "To reset the router, hold the reset button for ten seconds."


def test_code_stays_with_its_block_and_questions_are_never_answers() -> None:
    text = "Is the key secret?\n\nSend it in a header:\n```\nAuthorization: Bearer <key>\n```"
    parts = sections(text)
    assert parts[0].blocks == ["Is the key secret?", "Send it in a header:\n```\nAuthorization: Bearer <key>\n```"]
    assert answer_excerpt("is the key secret and how do I send it in a header", text).startswith("Send it in a header")
    assert answer_excerpt("anything", "Too short?") == ""

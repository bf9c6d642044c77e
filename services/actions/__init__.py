"""# actions: customers' records and actions on the company's systems

`aftercare.actions.v1.ActionsService` (protos/aftercare/actions/v1/actions.proto), port 50056.
The only aftercare process that talks to a company's systems (the import contracts and the
`network-policies` component hold that).

## The flow of a write

1. **Verify** the conversation's customer with an identity tool through `ExecuteRead`
   (`find_user_id_by_email`, `find_user_id_by_name_zip`). Every other tool needs it; one customer per
   conversation (a second identity is refused with `PERMISSION_DENIED ANOTHER_CUSTOMER`).
2. **Read** the customer's own records with `ExecuteRead`. A record whose owner (the catalog's `owner`
   expression) is not the verified customer is never returned (`PERMISSION_DENIED NOT_CUSTOMERS_RECORD`).
3. **Propose** the write (`ProposeAction`): the arguments against the tool's JSON Schema, the records the
   tool reads (ownership again), its ownership rules, its preconditions (`FAILED_PRECONDITION` with a
   `google.rpc.PreconditionFailure` naming each rule that does not hold), its approval rules. Nothing is
   executed. The action comes back `PROPOSED` with a `summary` (every detail, in words) and a `fingerprint`.
4. The customer reads the summary and says **yes**: `ConfirmAction` with that fingerprint (a yes to other
   details is refused: `CONFIRMATION_MISMATCH`). The records are checked again, then the write runs, or
   the action waits in `AWAITING_APPROVAL` for an agent's `DecideApproval` (an agent who proposed or
   confirmed it may not approve it). A change of mind: `CancelAction`, or a new proposal with
   `replaces_action_id`.

## Exactly once

Every action has one idempotency key, sent as `Idempotency-Key` with each attempt. Before the request
leaves, the action is `EXECUTING` in the database (a compare-and-set: of 50 concurrent yeses one sends)
with a lease and an attempt number that fences the outcome. A repeated `ConfirmAction` returns the stored
outcome (or waits for the running one). A process killed between the company's answer and the record
leaves the action `EXECUTING`; when its lease runs out the reconciler (every `RECONCILE_INTERVAL_S`)
re-sends the same key and the company's system answers from its idempotency store: one effect, and the
audit trail says `RECONCILED`. The system unreachable: `UNAVAILABLE`, the action `RETRYABLE` (nothing
half-done; a repeated yes retries with the same key; an answer that may have come after the write, a
timeout or a 5xx, is retried by the reconciler with backoff, never assumed undone).

## Connector catalogs

One JSON file per tenant in `catalogs/` (`ACTIONS_CATALOG_DIR` names another folder), versioned by its
`version` field plus a digest of its content: every action and audit event records the version that
decided it. `catalogs/shop.json` is the demo tenant's (demoshop/, the τ-bench retail store), with the
wiki.md policy's rules as preconditions. A catalog that does not load stops the boot.

- `connector`: `base_url` (or the environment variable `base_url_env`), `allowed_hosts`,
  `allowed_private_hosts` (the only hosts that may resolve to private, loopback or link-local addresses;
  every address a host resolves to is checked and the connection goes to the checked one; redirects are
  never followed), `auth.secret_env` (the name of the environment variable holding the token, never the
  token), `timeout_s`, `max_response_bytes`.
- each tool: `name`, `description`, `kind` (`read` | `write`), `arguments` (JSON Schema, an object with
  `additionalProperties: false`), `request` (`method`, `path` with `{expression}` placeholders,
  percent-encoded, `query`, `body`), `keep` (the response paths returned: `a.b`, `items[].price`,
  `methods.*.source`), and
  - reads: `owner` (whose record it is) or `shared_record`, `record_id` (for citations),
    `verifies_identity` (identity tools), `requires_verification`;
  - writes: `reads` (records to check, e.g. `{"name": "order", "tool": "get_order_details",
    "arguments": {"order_id": "order_id"}}`, optionally `for_each`), `ownership` and `preconditions`
    (`{"name", "rule", "message"}`), `values` (computed names), `approval` (`{"when", "reason"}`),
    `summary`, `dry_run`.
- `dry_run` (catalog or tool; or `ACTIONS_DRY_RUN_TENANTS`): everything happens except the write; the
  action's result is the request that would have been sent and the audit trail says `dry_run`.
- `audit_mask_fields`: fields the audit trail masks whatever they hold (emails, phone and card numbers
  are masked everywhere).

Expressions (expressions.py) are a small subset of Python's expression syntax, parsed
with `ast` and evaluated over JSON values by their own interpreter (never `eval`): names, `a.b`, `a["b"]`,
`a[0]`, comparisons, `and`/`or`/`not`, `x if c else y`, arithmetic, list comprehensions and generator
expressions, and the functions `len sum min max abs round all any zip keys values unique lower join money`.
Unknown names fail at load time; an expression that cannot be evaluated fails closed (a precondition does
not hold, an approval rule requires approval).

## Audit trail

`ListAuditEvents` (per conversation, customer or action; page tokens) and `ExportAudit` (JSON Lines):
reads, refusals, verifications, proposals, the customer's yes, approval requests and decisions (by whom),
executions, failures, cancellations and reconciliations, each with time, actor, masked arguments and
result, trace id and catalog version. Stored in the service's database (SQLite under `DATA_DIR`, or
PostgreSQL by `DATABASE_URL`).
"""

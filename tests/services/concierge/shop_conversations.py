"""The scripted conversation suite on the `shop` tenant (issue 22), as data.

A conversation is the customer's fixed turns (a typed message, the widget's Yes or No
button on the pending action, or an agent's decision on an approval), the plan a correct
planner gives for each message (tool and arguments: the planner double of
test_shop_conversations.py answers it when that message is the one the assistant acts
on), what the assistant must decide where it matters, and the writes a correct run makes,
as τ-bench actions ({name, kwargs}; none for reads and refusals). The back office's final
state must equal the state after replaying those writes on the initial data.

The planner's choices are scripted, not a model's: this suite checks everything around the
model (identity, reads, the yes, policy, approvals, execution) and runs in CI without an
LLM. What a real model chooses is measured by bench/actions_tau.py.

Records are found in the τ-bench retail data by what a conversation needs
(tests/demoshop/examples.py), never hard-coded; what the customer types that is not in the
data (a new address, an unknown email) is named where it is used."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.demoshop.examples import (
    Order,
    Source,
    first_order,
    method_of_kind,
    methods,
    order_of_another_user,
    other_variant,
    paid_with,
    swappable,
)

Write = dict[str, Any]
APPROVAL_LIMIT = 5000.0  # the shop catalog's approval rule: a refund above $5,000 needs an agent


# --- the shape of a conversation ------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What a correct planner answers for a message: a catalog tool and its arguments, or "none"."""

    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"tool": self.tool, "arguments": dict(self.arguments)}


NOTHING = Plan("none")


def plan(tool: str, **arguments: Any) -> Plan:
    return Plan(tool, arguments)


@dataclass(frozen=True)
class Expect:
    """What the assistant's answer to a turn must show; empty fields are not checked."""

    decision: str = ""  # concierge Decision without "DECISION_"
    reason: str = ""  # DecisionReason without "DECISION_REASON_"
    says: tuple[str, ...] = ()  # each in the reply
    never_says: tuple[str, ...] = ()  # none in the reply (another customer's data, data before identity)
    cites: str | None = None  # the record id the answer cites (FROM_RECORDS)
    action_state: str = ""  # the response's pending action state without "ACTION_STATE_"


@dataclass(frozen=True)
class Say:
    """A typed message. `plan`: what a correct planner gives when this message is the one acted on
    (the assistant may act on it a turn later, once the customer has given their identity); None
    when no planner should ever be asked about it."""

    text: str
    plan: Plan | None = None
    expect: Expect = Expect()


@dataclass(frozen=True)
class Press:
    """The widget's Yes or No button on the latest pending action (an ActionReply with its id and
    fingerprint); `forged`: a fingerprint of other details than the ones proposed."""

    confirmed: bool
    expect: Expect = Expect()
    forged: bool = False

    @property
    def text(self) -> str:
        return "Yes" if self.confirmed else "No"


@dataclass(frozen=True)
class AgentDecides:
    """An agent approves or rejects the action awaiting approval (the console's one click, the actions
    service's DecideApproval); `state`: the action's state after it (actions ActionState without prefix)."""

    approve: bool
    state: str


Turn = Say | Press | AgentDecides


@dataclass(frozen=True)
class Conversation:
    name: str
    summary: str
    turns: tuple[Turn, ...]
    # τ-bench actions a correct run executes, in order.
    writes: tuple[Write, ...] = ()
    # The customer the conversation ends verified as ("" for nobody).
    customer: str = ""


def write(name: str, **kwargs: Any) -> Write:
    return {"name": name, "kwargs": kwargs}


# --- finding records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    user_id: str
    email: str
    first_name: str
    last_name: str
    zip: str
    record: dict[str, Any]


def customer_of(source: Source, order: Order) -> Customer:
    user = source["users"][order["user_id"]]
    return Customer(order["user_id"], user["email"], user["name"]["first_name"], user["name"]["last_name"],
                    user["address"]["zip"], user)


def paid_total(order: Order) -> float:
    history = order["payment_history"]
    paid = sum(float(p["amount"]) for p in history if p["transaction_type"] == "payment")
    refunded = sum(float(p["amount"]) for p in history if p["transaction_type"] == "refund")
    return round(paid - refunded, 2)


def single_payment(order: Order) -> bool:
    history = order["payment_history"]
    return len(history) == 1 and history[0]["transaction_type"] == "payment"


def distinct_names(order: Order) -> bool:
    """Each item's product named once in the order, so that naming a product names one item."""
    names = [item["name"] for item in order["items"]]
    return len(names) == len(set(names))


def small_pending(order: Order) -> bool:
    """A pending order that can be cancelled or changed without an agent's approval."""
    return order["status"] == "pending" and single_payment(order) and paid_total(order) <= APPROVAL_LIMIT


def unique_by_name_and_zip(source: Source, order: Order) -> bool:
    """The order's customer is the only one with their name and zip (the identity lookup finds them)."""
    user = source["users"][order["user_id"]]
    key = (user["name"]["first_name"].lower(), user["name"]["last_name"].lower(), user["address"]["zip"])
    return sum(
        (other["name"]["first_name"].lower(), other["name"]["last_name"].lower(), other["address"]["zip"]) == key
        for other in source["users"].values()
    ) == 1


def method_words(source: Source, order: Order, method_id: str) -> str:
    """How a customer names one of their payment methods ("my paypal", "my credit card ending 1234")."""
    method = methods(source, order)[method_id]
    if method["source"] == "credit_card":
        return f"my credit card ending {method['last_four']}"
    return "my " + str(method["source"]).replace("_", " ")


def gift_card_balance(source: Source, order: Order) -> tuple[str, float] | None:
    """The customer's (first) gift card and its balance; None without one."""
    card = method_of_kind(source, order, "gift_card")
    return None if card is None else (card, float(methods(source, order)[card]["balance"]))


def item_named(order: Order, item_id: str) -> dict[str, Any]:
    return next(item for item in order["items"] if item["item_id"] == item_id)


def not_a_gift_card(order: Order) -> bool:
    return single_payment(order) and not paid_with(order, "gift_card")


def customers_with_two_small_pending(source: Source) -> tuple[Order, Order]:
    """Two small pending orders of one customer."""
    for _, order in sorted(source["orders"].items()):
        if not small_pending(order):
            continue
        other = next(
            (o for _, o in sorted(source["orders"].items())
             if o["user_id"] == order["user_id"] and o["order_id"] != order["order_id"] and small_pending(o)),
            None,
        )
        if other is not None:
            return order, other
    raise LookupError("no customer with two small pending orders")


def expensive_pair(order: Order) -> list[dict[str, Any]] | None:
    """Two differently named items of the order whose prices add up to more than the approval limit."""
    items = order["items"]
    for i, first in enumerate(items):
        for second in items[i + 1:]:
            if first["name"] != second["name"] and first["price"] + second["price"] > APPROVAL_LIMIT:
                return [first, second]
    return None


# New addresses customers give (not in the data): a second line, and none.
NEW_ADDRESS = {"address1": "742 Evergreen Terrace", "address2": "Apt 5B", "city": "Springfield", "state": "OR",
               "country": "USA", "zip": "97477"}
NO_SECOND_LINE = {"address1": "1600 Lakeshore Drive", "address2": "", "city": "Madison", "state": "WI",
                  "country": "USA", "zip": "53703"}
UNKNOWN_EMAIL = "nobody.at.all@example.com"  # no customer of the shop


def spoken(address: Mapping[str, str]) -> str:
    parts = [address["address1"], address["address2"], address["city"], f"{address['state']} {address['zip']}",
             address["country"]]
    return ", ".join(part for part in parts if part)


# --- what the assistant answers -------------------------------------------------------------------


def verify_by_email(customer: Customer) -> Say:
    return Say(f"Hi, my email is {customer.email}", expect=Expect("CLARIFY", "NEEDS_DETAIL", says=("verified",)))


def answered(record_id: str, *says: str, never_says: tuple[str, ...] = ()) -> Expect:
    return Expect("ANSWERED", "FROM_RECORDS", says=says, never_says=never_says, cites=record_id)


def proposed(*says: str) -> Expect:
    return Expect("CONFIRM_ACTION", "ACTION_PROPOSED", says=("Shall I go ahead? (yes/no)", *says),
                  action_state="PROPOSED")


def refused(*says: str) -> Expect:
    return Expect("CLARIFY", "ACTION_NOT_ALLOWED", says=(*says, "Nothing was changed"))


def asked_for(*says: str) -> Expect:
    return Expect("CLARIFY", "NEEDS_ARGUMENT", says=says)


NEEDS_IDENTITY = Expect("CLARIFY", "NEEDS_IDENTITY", says=("verify who you are",))
EXECUTED = Expect("ACTED", "ACTION_EXECUTED", says=("Done",), action_state="EXECUTED")
DECLINED = Expect("ACTED", "ACTION_CANCELLED", says=("Nothing was changed",), action_state="CANCELLED")
AWAITING_APPROVAL = Expect("ACTED", "ACTION_AWAITING_APPROVAL", says=("An agent will review it",),
                           action_state="AWAITING_APPROVAL")


# --- the suite -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Script:
    """A conversation before it is named: its turns, the writes a correct run makes, its customer."""

    turns: tuple[Turn, ...]
    writes: tuple[Write, ...]
    customer: str


def script(*turns: Turn, writes: tuple[Write, ...] = (), customer: str = "") -> Script:
    return Script(turns, writes, customer)


Builder = Callable[[Source], Conversation]
SUITE: dict[str, Builder] = {}


def conversation(build: Callable[[Source], Script]) -> Builder:
    """Registers a conversation under its function's name; its docstring is the summary."""

    def built(source: Source) -> Conversation:
        found = build(source)
        return Conversation(build.__name__, (build.__doc__ or "").strip(), found.turns, found.writes, found.customer)

    SUITE[build.__name__] = built
    return built


# Identity and reads.


@conversation
def where_is_my_order_verified_by_email_when_asked(source: Source) -> Script:
    """"Where is my order?" first: the identity is asked for, nothing shown; the email given, the
    earlier question is answered from the order record."""
    order = first_order(source, lambda o: o["status"] == "delivered" and bool(o["fulfillments"]))
    who = customer_of(source, order)
    oid = order["order_id"]
    first_item = order["items"][0]["name"]
    return script(
        Say(f"Where is my order {oid}?", plan("get_order_details", order_id=oid),
            Expect("CLARIFY", "NEEDS_IDENTITY", never_says=(first_item,))),
        Say(f"It's {who.email}", expect=answered(oid, f"Order {oid} is delivered", first_item)),
        customer=who.user_id,
    )


@conversation
def status_with_name_and_zip_in_one_message(source: Source) -> Script:
    """Name, zip and the question in one message: verified by name and zip, answered at once."""
    order = first_order(source, lambda o: o["status"] == "processed" and unique_by_name_and_zip(source, o))
    who = customer_of(source, order)
    oid = order["order_id"]
    return script(
        Say(f"Hi, I'm {who.first_name} {who.last_name}, zip {who.zip}. What's the status of {oid}?",
            plan("get_order_details", order_id=oid), answered(oid, f"Order {oid} is processed")),
        customer=who.user_id,
    )


@conversation
def name_and_zip_given_when_asked(source: Source) -> Script:
    """Identity by name and zip given after the assistant asks for it."""
    order = first_order(source, lambda o: o["status"] == "pending" and unique_by_name_and_zip(source, o))
    who = customer_of(source, order)
    oid = order["order_id"]
    return script(
        Say(f"Has my order {oid} shipped yet?", plan("get_order_details", order_id=oid), NEEDS_IDENTITY),
        Say(f"I'm {who.first_name} {who.last_name}, my zip code is {who.zip}",
            expect=answered(oid, f"Order {oid} is pending")),
        customer=who.user_id,
    )


@conversation
def verified_first_then_a_question(source: Source) -> Script:
    """Only the email first (the assistant says so and asks what next), then the question."""
    order = first_order(source, lambda o: o["status"] == "cancelled")
    who = customer_of(source, order)
    oid = order["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Where is my order {oid}?", plan("get_order_details", order_id=oid),
            answered(oid, f"Order {oid} is cancelled")),
        customer=who.user_id,
    )


@conversation
def tracking_number_of_a_delivered_order(source: Source) -> Script:
    """The tracking number of a delivered order, from its fulfillments."""
    order = first_order(source, lambda o: o["status"] == "delivered" and bool(o["fulfillments"])
)
    who = customer_of(source, order)
    oid = order["order_id"]
    tracking = order["fulfillments"][0]["tracking_id"][0]
    return script(
        verify_by_email(who),
        Say(f"What's the tracking number for my order {oid}?", plan("get_order_details", order_id=oid),
            answered(oid, f"Tracking number: {tracking}")),
        customer=who.user_id,
    )


@conversation
def what_did_i_pay_for_an_order(source: Source) -> Script:
    """"What did I pay?": the payments of the order (a read, even though "pay" is near "payment")."""
    order = first_order(source, lambda o: o["status"] == "pending" and paid_with(o, "paypal"))
    who = customer_of(source, order)
    oid = order["order_id"]
    payment = order["payment_history"][0]
    return script(
        verify_by_email(who),
        Say(f"What did I pay for order {oid}?", plan("get_order_details", order_id=oid),
            answered(oid, f"payment of ${payment['amount']:,.2f} ({payment['payment_method_id']})")),
        customer=who.user_id,
    )


@conversation
def the_address_on_my_account(source: Source) -> Script:
    """The account's default address, from the user record."""
    order = first_order(source, lambda o: o["status"] == "delivered")
    who = customer_of(source, order)
    address = who.record["address"]
    return script(
        verify_by_email(who),
        Say("Which address do you have on my account?", plan("get_user_details"),
            answered(who.user_id, address["address1"], address["city"])),
        customer=who.user_id,
    )


@conversation
def my_payment_methods(source: Source) -> Script:
    """The account's payment methods, the gift card among them with its id."""
    order = first_order(source, lambda o: method_of_kind(source, o, "gift_card") is not None)
    who = customer_of(source, order)
    gift_card = method_of_kind(source, order, "gift_card")
    assert gift_card is not None
    return script(
        verify_by_email(who),
        Say("Which payment methods do I have on my account?", plan("get_user_details"),
            answered(who.user_id, f"gift card ({gift_card})")),
        customer=who.user_id,
    )


@conversation
def the_balance_of_my_gift_card(source: Source) -> Script:
    """"What's my gift card balance?": answered from the user record, which has it."""

    def small_card(o: Order) -> bool:
        card = gift_card_balance(source, o)
        return card is not None and card[1] < 1000  # no thousands separator to agree on

    order = first_order(source, small_card)
    who = customer_of(source, order)
    card, balance = gift_card_balance(source, order) or ("", 0.0)
    return script(
        verify_by_email(who),
        Say("What's the balance of the gift card on my account?", plan("get_user_details"),
            answered(who.user_id, card, f"{balance:.2f}")),
        customer=who.user_id,
    )


@conversation
def the_orders_on_my_account(source: Source) -> Script:
    """Every order id of the account, from the user record."""
    order = first_order(source, lambda o: len(source["users"][o["user_id"]]["orders"]) >= 3)
    who = customer_of(source, order)
    return script(
        verify_by_email(who),
        Say("What orders do I have on my account?", plan("get_user_details"),
            answered(who.user_id, *who.record["orders"])),
        customer=who.user_id,
    )


@conversation
def the_options_of_a_product_in_my_order(source: Source) -> Script:
    """The variants of a product the customer names by id (get_product_details): available ones listed."""
    order, item_id, variant_id = swappable(source, "delivered")
    who = customer_of(source, order)
    item = item_named(order, item_id)
    product = source["products"][item["product_id"]]
    return script(
        verify_by_email(who),
        Say(f"My order {order['order_id']} has a {item['name']}. What options does product {item['product_id']} "
            "come in?", plan("get_product_details", product_id=item["product_id"]),
            answered(item["product_id"], product["name"], f"(item {variant_id})")),
        customer=who.user_id,
    )


def _product_types(source: Source) -> list[tuple[str, str]]:
    return sorted((product["name"], product_id) for product_id, product in source["products"].items())


@conversation
def the_product_types_then_one_product(source: Source) -> Script:
    """The store's product types (list_all_product_types), then one of them by its id."""
    order = first_order(source, lambda o: o["status"] == "pending")
    who = customer_of(source, order)
    name, product_id = _product_types(source)[0]
    return script(
        verify_by_email(who),
        Say(f"Before I change my order {order['order_id']}: which product types do you sell?",
            plan("list_all_product_types"), Expect("ANSWERED", "FROM_RECORDS", says=(name, product_id))),
        Say(f"What variants does product {product_id} have for my order?", plan("get_product_details",
            product_id=product_id), answered(product_id, name)),
        customer=who.user_id,
    )


@conversation
def every_product_type_is_listed(source: Source) -> Script:
    """Asked which product types the store sells, the answer names all of them."""
    order = first_order(source, lambda o: o["status"] == "pending")
    who = customer_of(source, order)
    types = _product_types(source)
    return script(
        verify_by_email(who),
        Say(f"Which product types do you sell? I may add to my order {order['order_id']}.",
            plan("list_all_product_types"), Expect("ANSWERED", "FROM_RECORDS", says=tuple(n for n, _ in types))),
        customer=who.user_id,
    )


# Identity refusals.


@conversation
def no_private_data_before_verification(source: Source) -> Script:
    """Questions and a cancel before any identity: each asks for it, nothing is read or done."""
    order = first_order(source, small_pending)
    oid = order["order_id"]
    first_item = order["items"][0]["name"]
    return script(
        Say(f"Where is my order {oid}?", plan("get_order_details", order_id=oid),
            Expect("CLARIFY", "NEEDS_IDENTITY", never_says=(first_item,))),
        Say(f"Cancel {oid}, I ordered it by mistake",
            plan("cancel_pending_order", order_id=oid, reason="ordered by mistake"),
            Expect("CLARIFY", "NEEDS_IDENTITY", never_says=(first_item,))),
        Say("Which address do you have on my account?", plan("get_user_details"), NEEDS_IDENTITY),
        Say(f"Please update the address on my account to {spoken(NEW_ADDRESS)}",
            plan("modify_user_address", **NEW_ADDRESS), NEEDS_IDENTITY),
    )


@conversation
def an_unknown_email_then_the_right_one(source: Source) -> Script:
    """An email of nobody verifies nobody; the right one, with the question again, is answered."""
    order = first_order(source, lambda o: o["status"] == "delivered")
    who = customer_of(source, order)
    oid = order["order_id"]
    return script(
        Say(f"Where is my order {oid}?", plan("get_order_details", order_id=oid), NEEDS_IDENTITY),
        Say(f"It's {UNKNOWN_EMAIL}", expect=Expect("CLARIFY", "NEEDS_IDENTITY", says=("couldn't find",))),
        Say(f"Sorry, it's {who.email}. Where is my order {oid}?", plan("get_order_details", order_id=oid),
            answered(oid, f"Order {oid} is delivered")),
        customer=who.user_id,
    )


@conversation
def the_first_question_is_answered_after_a_wrong_email(source: Source) -> Script:
    """After a wrong email and then the right one, the customer's first question is answered
    without being asked again (as it is after one right email)."""
    order = first_order(source, lambda o: o["status"] == "delivered")
    who = customer_of(source, order)
    oid = order["order_id"]
    return script(
        Say(f"Where is my order {oid}?", plan("get_order_details", order_id=oid), NEEDS_IDENTITY),
        Say(f"It's {UNKNOWN_EMAIL}", NOTHING, Expect("CLARIFY", "NEEDS_IDENTITY", says=("couldn't find",))),
        Say(f"Sorry, my email is {who.email}", expect=answered(oid, f"Order {oid} is delivered")),
        customer=who.user_id,
    )


@conversation
def another_customers_order_is_not_shown(source: Source) -> Script:
    """Another customer's order reads as no order at all: nothing of it is shown."""
    order = first_order(source, lambda o: o["status"] == "delivered")
    who = customer_of(source, order)
    theirs = order_of_another_user(source, order, "pending")
    mine = {item["name"] for item in order["items"]}
    hidden = tuple(item["name"] for item in theirs["items"] if item["name"] not in mine)
    return script(
        verify_by_email(who),
        Say(f"Where is my order {theirs['order_id']}?", plan("get_order_details", order_id=theirs["order_id"]),
            Expect("CLARIFY", "NEEDS_ARGUMENT", says=("couldn't find",), never_says=hidden)),
        customer=who.user_id,
    )


@conversation
def another_customers_order_is_not_cancelled(source: Source) -> Script:
    """A cancel of another customer's pending order is refused, nothing proposed."""
    order = first_order(source, lambda o: o["status"] == "delivered")
    who = customer_of(source, order)
    theirs = order_of_another_user(source, order, "pending")
    toid = theirs["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Cancel order {toid}, I ordered it by mistake",
            plan("cancel_pending_order", order_id=toid, reason="ordered by mistake"),
            Expect("CLARIFY", "ACTION_NOT_ALLOWED", says=("your own account",))),
        customer=who.user_id,
    )


@conversation
def one_customer_per_conversation(source: Source) -> Script:
    """A second customer's email in a verified conversation is refused; the first stays verified."""
    order = first_order(source, lambda o: o["status"] == "pending")
    who = customer_of(source, order)
    theirs = order_of_another_user(source, order, "pending")
    other = customer_of(source, theirs)
    return script(
        verify_by_email(who),
        Say(f"Actually I'm {other.email}, where is my order {theirs['order_id']}?",
            plan("get_order_details", order_id=theirs["order_id"]),
            Expect("CLARIFY", "ACTION_NOT_ALLOWED", says=("one customer",),
                   never_says=tuple(item["name"] for item in theirs["items"]))),
        customer=who.user_id,
    )


@conversation
def another_customers_payment_method_is_not_used(source: Source) -> Script:
    """A payment method id of another customer's is refused (the actions service's ownership check)."""
    order = first_order(source, lambda o: small_pending(o))
    who = customer_of(source, order)
    theirs = first_order(source, lambda o: o["user_id"] != order["user_id"]
                         and method_of_kind(source, o, "gift_card") is not None)
    foreign = method_of_kind(source, theirs, "gift_card")
    oid = order["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Please pay my order {oid} with {foreign} instead",
            plan("modify_pending_order_payment", order_id=oid, payment_method_id=foreign),
            Expect("CLARIFY", "ACTION_NOT_ALLOWED", says=("your own account",))),
        customer=who.user_id,
    )


# Policy refusals: the precondition's reason, nothing proposed, nothing changed.


@conversation
def cancelling_a_delivered_order_is_refused(source: Source) -> Script:
    """Only pending orders can be cancelled: a delivered one is refused."""
    order = first_order(source, lambda o: o["status"] == "delivered")
    who = customer_of(source, order)
    oid = order["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Cancel my order {oid}, I no longer need it",
            plan("cancel_pending_order", order_id=oid, reason="no longer needed"),
            refused("only pending orders can be cancelled")),
        customer=who.user_id,
    )


@conversation
def cancelling_a_processed_order_is_refused(source: Source) -> Script:
    """A processed order (shipped, not delivered) cannot be cancelled either."""
    order = first_order(source, lambda o: o["status"] == "processed")
    who = customer_of(source, order)
    oid = order["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Please cancel order {oid}, ordered by mistake",
            plan("cancel_pending_order", order_id=oid, reason="ordered by mistake"),
            refused(f"Order {oid} is processed", "only pending orders can be cancelled")),
        customer=who.user_id,
    )


@conversation
def returning_from_a_pending_order_is_refused(source: Source) -> Script:
    """Only delivered orders can be returned."""
    order = first_order(source, lambda o: small_pending(o) and not_a_gift_card(o) and distinct_names(o))
    who = customer_of(source, order)
    oid = order["order_id"]
    item = order["items"][0]
    method = order["payment_history"][0]["payment_method_id"]
    return script(
        verify_by_email(who),
        Say(f"I want to return the {item['name']} from order {oid}, refund to {method}",
            plan("return_delivered_order_items", order_id=oid, item_ids=[item["item_id"]], payment_method_id=method),
            refused("only delivered orders can be returned")),
        customer=who.user_id,
    )


@conversation
def exchanging_on_a_pending_order_is_refused(source: Source) -> Script:
    """Only delivered orders can be exchanged (a pending one's items are modified instead)."""
    order, item_id, variant_id = swappable(source, "pending", lambda o: small_pending(o) and not_a_gift_card(o)
                                           and distinct_names(o))
    who = customer_of(source, order)
    oid = order["order_id"]
    method = order["payment_history"][0]["payment_method_id"]
    return script(
        verify_by_email(who),
        Say(f"Exchange the {item_named(order, item_id)['name']} in order {oid} for item {variant_id}, "
            f"paying with {method}",
            plan("exchange_delivered_order_items", order_id=oid, item_ids=[item_id], new_item_ids=[variant_id],
                 payment_method_id=method),
            refused("only delivered orders can be exchanged")),
        customer=who.user_id,
    )


@conversation
def modifying_items_of_a_delivered_order_is_refused(source: Source) -> Script:
    """Only pending orders' items can be modified."""
    order, item_id, variant_id = swappable(source, "delivered", lambda o: not_a_gift_card(o) and distinct_names(o))
    who = customer_of(source, order)
    oid = order["order_id"]
    method = order["payment_history"][0]["payment_method_id"]
    return script(
        verify_by_email(who),
        Say(f"Change the {item_named(order, item_id)['name']} in order {oid} to item {variant_id}, "
            f"paying with {method}",
            plan("modify_pending_order_items", order_id=oid, item_ids=[item_id], new_item_ids=[variant_id],
                 payment_method_id=method),
            refused("only pending orders can be modified")),
        customer=who.user_id,
    )


@conversation
def a_delivered_orders_address_is_not_changed(source: Source) -> Script:
    """A delivered order's shipping address cannot be changed."""
    order = first_order(source, lambda o: o["status"] == "delivered")
    who = customer_of(source, order)
    oid = order["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Change the shipping address of order {oid} to {spoken(NEW_ADDRESS)}",
            plan("modify_pending_order_address", order_id=oid, **NEW_ADDRESS),
            refused("only pending orders can be modified")),
        customer=who.user_id,
    )


@conversation
def paying_with_the_method_already_paying_is_refused(source: Source) -> Script:
    """A payment change to the method that already pays for the order is refused."""
    order = first_order(source, lambda o: small_pending(o) and paid_with(o, "paypal"))
    who = customer_of(source, order)
    oid = order["order_id"]
    method = order["payment_history"][0]["payment_method_id"]
    return script(
        verify_by_email(who),
        Say(f"Please switch the payment of order {oid} to {method}",
            plan("modify_pending_order_payment", order_id=oid, payment_method_id=method),
            refused("already pays for order")),
        customer=who.user_id,
    )


@conversation
def a_gift_card_too_small_for_the_order_is_refused(source: Source) -> Script:
    """A gift card whose balance does not cover the order total cannot pay for it."""

    def fits(o: Order) -> bool:
        card = gift_card_balance(source, o)
        return small_pending(o) and not_a_gift_card(o) and card is not None and card[1] < paid_total(o)

    order = first_order(source, fits)
    who = customer_of(source, order)
    oid = order["order_id"]
    card, _ = gift_card_balance(source, order) or ("", 0.0)
    return script(
        verify_by_email(who),
        Say(f"I'd like to pay order {oid} with {card} instead",
            plan("modify_pending_order_payment", order_id=oid, payment_method_id=card),
            refused("does not cover the order total")),
        customer=who.user_id,
    )


@conversation
def a_refund_to_another_card_is_refused(source: Source) -> Script:
    """A return's refund goes to the original method or a gift card: another card is refused."""

    def other_method(o: Order) -> str | None:
        original = o["payment_history"][0]["payment_method_id"]
        return next((m for m in sorted(methods(source, o)) if m != original and not m.startswith("gift_card")), None)

    order = first_order(source, lambda o: o["status"] == "delivered" and not_a_gift_card(o) and distinct_names(o)
                        and other_method(o) is not None)
    who = customer_of(source, order)
    oid = order["order_id"]
    item = order["items"][0]
    method = other_method(order)
    return script(
        verify_by_email(who),
        Say(f"Return the {item['name']} from order {oid} and refund it to {method}",
            plan("return_delivered_order_items", order_id=oid, item_ids=[item["item_id"]], payment_method_id=method),
            refused("original payment method or to a gift card")),
        customer=who.user_id,
    )


@conversation
def an_unavailable_option_is_not_exchanged_for(source: Source) -> Script:
    """An exchange for a variant that is not available is refused."""

    def unavailable(o: Order) -> tuple[str, str] | None:
        for item in o["items"]:
            variant = other_variant(source, item, available=False)
            if variant is not None:
                return item["item_id"], variant["item_id"]
        return None

    order = first_order(source, lambda o: o["status"] == "delivered" and not_a_gift_card(o) and distinct_names(o)
                        and unavailable(o) is not None)
    who = customer_of(source, order)
    oid = order["order_id"]
    item_id, variant_id = unavailable(order) or ("", "")
    method = order["payment_history"][0]["payment_method_id"]
    return script(
        verify_by_email(who),
        Say(f"Exchange the {item_named(order, item_id)['name']} in order {oid} for item {variant_id}, "
            f"paying with {method}",
            plan("exchange_delivered_order_items", order_id=oid, item_ids=[item_id], new_item_ids=[variant_id],
                 payment_method_id=method),
            refused("available option of the same product")),
        customer=who.user_id,
    )


def _two_swappable_items(source: Source, order: Order) -> list[tuple[str, str]]:
    found = []
    for item in order["items"]:
        variant = other_variant(source, item)
        if variant is not None:
            found.append((item["item_id"], variant["item_id"]))
    return found


@conversation
def a_second_exchange_on_one_order_is_refused(source: Source) -> Script:
    """One exchange per order: the first is done, a second on the same order is refused."""
    order = first_order(source, lambda o: o["status"] == "delivered" and not_a_gift_card(o) and distinct_names(o)
                        and len(_two_swappable_items(source, o)) >= 2)
    who = customer_of(source, order)
    oid = order["order_id"]
    (first, first_new), (second, second_new) = _two_swappable_items(source, order)[:2]
    method = order["payment_history"][0]["payment_method_id"]
    exchange = {"order_id": oid, "item_ids": [first], "new_item_ids": [first_new], "payment_method_id": method}
    return script(
        verify_by_email(who),
        Say(f"Exchange the {item_named(order, first)['name']} in order {oid} for item {first_new}, "
            f"paying with {method}", plan("exchange_delivered_order_items", **exchange),
            proposed(item_named(order, first)["name"])),
        Say("yes", expect=EXECUTED),
        Say(f"And exchange the {item_named(order, second)['name']} in order {oid} for item {second_new}, "
            f"paying with {method}",
            plan("exchange_delivered_order_items", order_id=oid, item_ids=[second], new_item_ids=[second_new],
                 payment_method_id=method),
            refused("exchange requested", "only delivered orders can be exchanged")),
        writes=(write("exchange_delivered_order_items", **exchange),), customer=who.user_id,
    )


@conversation
def items_changed_once_then_the_order_cannot_be_cancelled(source: Source) -> Script:
    """After its items are modified, an order can no longer be cancelled."""
    order, item_id, variant_id = swappable(source, "pending", lambda o: small_pending(o) and not_a_gift_card(o)
                                           and distinct_names(o))
    who = customer_of(source, order)
    oid = order["order_id"]
    method = order["payment_history"][0]["payment_method_id"]
    change = {"order_id": oid, "item_ids": [item_id], "new_item_ids": [variant_id], "payment_method_id": method}
    return script(
        verify_by_email(who),
        Say(f"Change the {item_named(order, item_id)['name']} in order {oid} to item {variant_id}, "
            f"paying with {method}", plan("modify_pending_order_items", **change),
            proposed("can no longer be modified or cancelled")),
        Press(True, EXECUTED),
        Say(f"Now cancel order {oid}, I no longer need it",
            plan("cancel_pending_order", order_id=oid, reason="no longer needed"),
            refused("pending (item modified)", "only pending orders can be cancelled")),
        writes=(write("modify_pending_order_items", **change),), customer=who.user_id,
    )


# Writes: proposed with every detail, done only after an explicit yes.


def _cancellable(source: Source, nth: int) -> tuple[Order, Customer]:
    """The nth small pending order (so that the conversations are not all about one order)."""
    order = [o for _, o in sorted(source["orders"].items()) if small_pending(o)][nth]
    return order, customer_of(source, order)


@conversation
def cancel_with_a_typed_yes(source: Source) -> Script:
    """A pending order cancelled: every detail listed, a typed yes, done."""
    order, who = _cancellable(source, 0)
    oid = order["order_id"]
    cancel = {"order_id": oid, "reason": "ordered by mistake"}
    return script(
        verify_by_email(who),
        Say(f"Please cancel order {oid}, I ordered it by mistake", plan("cancel_pending_order", **cancel),
            proposed(f"Cancel order {oid}", order["items"][0]["name"], "reason: ordered by mistake",
                     f"${paid_total(order):,.2f}")),
        Say("Yes please", expect=EXECUTED),
        writes=(write("cancel_pending_order", **cancel),), customer=who.user_id,
    )


@conversation
def cancel_with_the_yes_button(source: Source) -> Script:
    """The widget's Yes button (the action's id and fingerprint) confirms."""
    order, who = _cancellable(source, 1)
    oid = order["order_id"]
    cancel = {"order_id": oid, "reason": "no longer needed"}
    return script(
        verify_by_email(who),
        Say(f"cancel {oid}, I no longer need it", plan("cancel_pending_order", **cancel),
            proposed("reason: no longer needed")),
        Press(True, EXECUTED),
        writes=(write("cancel_pending_order", **cancel),), customer=who.user_id,
    )


@conversation
def cancel_reason_asked_for(source: Source) -> Script:
    """The reason missing: asked for with the choices, never guessed; given, proposed, done."""
    order, who = _cancellable(source, 2)
    oid = order["order_id"]
    cancel = {"order_id": oid, "reason": "ordered by mistake"}
    return script(
        verify_by_email(who),
        Say(f"Cancel my order {oid}", plan("cancel_pending_order", order_id=oid),
            asked_for("'no longer needed' or 'ordered by mistake'")),
        Say("Cancel it, I ordered it by mistake", plan("cancel_pending_order", **cancel),
            proposed(f"Cancel order {oid}", "reason: ordered by mistake")),
        Say("yes", expect=EXECUTED),
        writes=(write("cancel_pending_order", **cancel),), customer=who.user_id,
    )


@conversation
def the_asked_for_reason_alone_is_enough(source: Source) -> Script:
    """Asked for the reason, the customer answers with the reason alone ("It's no longer needed"):
    the cancel they asked for is proposed."""
    order, who = _cancellable(source, 14)
    oid = order["order_id"]
    cancel = {"order_id": oid, "reason": "no longer needed"}
    return script(
        verify_by_email(who),
        Say(f"Cancel my order {oid}", plan("cancel_pending_order", order_id=oid),
            asked_for("'no longer needed' or 'ordered by mistake'")),
        Say("It's no longer needed", plan("cancel_pending_order", **cancel), proposed("reason: no longer needed")),
        Say("yes", expect=EXECUTED),
        writes=(write("cancel_pending_order", **cancel),), customer=who.user_id,
    )


@conversation
def cancel_declined_with_a_typed_no(source: Source) -> Script:
    """A no withdraws the proposal: nothing changes."""
    order, who = _cancellable(source, 3)
    oid = order["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Cancel order {oid}, ordered by mistake",
            plan("cancel_pending_order", order_id=oid, reason="ordered by mistake"), proposed()),
        Say("No", expect=DECLINED),
        customer=who.user_id,
    )


@conversation
def cancel_declined_with_the_no_button(source: Source) -> Script:
    """The widget's No button withdraws the proposal."""
    order, who = _cancellable(source, 4)
    oid = order["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Cancel order {oid}, no longer needed",
            plan("cancel_pending_order", order_id=oid, reason="no longer needed"), proposed()),
        Press(False, DECLINED),
        customer=who.user_id,
    )


@conversation
def a_plain_ok_is_not_a_yes(source: Source) -> Script:
    """Only a plain yes confirms: "ok" withdraws the proposal and is taken as a new request."""
    order, who = _cancellable(source, 5)
    oid = order["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Cancel order {oid}, ordered by mistake",
            plan("cancel_pending_order", order_id=oid, reason="ordered by mistake"), proposed()),
        Say("ok", NOTHING, Expect("CLARIFY", "NEEDS_DETAIL")),
        customer=who.user_id,
    )


@conversation
def a_forged_yes_button_does_nothing_until_the_real_yes(source: Source) -> Script:
    """A yes for other details than the proposed ones is refused and the proposal kept; the real yes runs it."""
    order, who = _cancellable(source, 6)
    oid = order["order_id"]
    cancel = {"order_id": oid, "reason": "ordered by mistake"}
    return script(
        verify_by_email(who),
        Say(f"Cancel order {oid}, ordered by mistake", plan("cancel_pending_order", **cancel), proposed()),
        Press(True, Expect("CONFIRM_ACTION", "ACTION_PROPOSED", says=("not for the action I proposed",),
                           action_state="PROPOSED"), forged=True),
        Say("yes", expect=EXECUTED),
        writes=(write("cancel_pending_order", **cancel),), customer=who.user_id,
    )


@conversation
def a_yes_after_a_no_confirms_nothing(source: Source) -> Script:
    """After a no, the old proposal's Yes button confirms nothing."""
    order, who = _cancellable(source, 7)
    oid = order["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Cancel order {oid}, no longer needed",
            plan("cancel_pending_order", order_id=oid, reason="no longer needed"), proposed()),
        Say("no", expect=DECLINED),
        Press(True, Expect("CLARIFY", "ACTION_NOT_ALLOWED", says=("nothing was done",))),
        customer=who.user_id,
    )


@conversation
def cancel_reason_revised_then_yes(source: Source) -> Script:
    """A change of mind before the yes: the proposal is revised, and the revised one runs."""
    order, who = _cancellable(source, 8)
    oid = order["order_id"]
    cancel = {"order_id": oid, "reason": "ordered by mistake"}
    return script(
        verify_by_email(who),
        Say(f"cancel {oid}, I no longer need it",
            plan("cancel_pending_order", order_id=oid, reason="no longer needed"), proposed("no longer needed")),
        Say(f"Actually cancel {oid} because I ordered it by mistake", plan("cancel_pending_order", **cancel),
            proposed("reason: ordered by mistake")),
        Say("yes", expect=EXECUTED),
        writes=(write("cancel_pending_order", **cancel),), customer=who.user_id,
    )


@conversation
def change_of_mind_to_another_order(source: Source) -> Script:
    """The customer switches the cancel to their other pending order: only that one is cancelled."""
    first, second = customers_with_two_small_pending(source)
    who = customer_of(source, first)
    cancel = {"order_id": second["order_id"], "reason": "no longer needed"}
    return script(
        verify_by_email(who),
        Say(f"Cancel order {first['order_id']}, no longer needed",
            plan("cancel_pending_order", order_id=first["order_id"], reason="no longer needed"),
            proposed(first["order_id"])),
        Say(f"Sorry, I meant order {second['order_id']} instead, cancel that one, no longer needed",
            plan("cancel_pending_order", **cancel), proposed(second["order_id"])),
        Press(True, EXECUTED),
        writes=(write("cancel_pending_order", **cancel),), customer=who.user_id,
    )


@conversation
def change_of_mind_from_cancel_to_a_new_address(source: Source) -> Script:
    """Rather than cancel, the customer has the order shipped to a new address."""
    order, who = _cancellable(source, 9)
    oid = order["order_id"]
    moved = {"order_id": oid, **NEW_ADDRESS}
    return script(
        verify_by_email(who),
        Say(f"Cancel order {oid}, ordered by mistake",
            plan("cancel_pending_order", order_id=oid, reason="ordered by mistake"), proposed()),
        Say(f"Actually don't cancel it, change its shipping address to {spoken(NEW_ADDRESS)}",
            plan("modify_pending_order_address", **moved), proposed(f"Ship order {oid} to", NEW_ADDRESS["city"])),
        Say("yes", expect=EXECUTED),
        writes=(write("modify_pending_order_address", **moved),), customer=who.user_id,
    )


@conversation
def an_orders_shipping_address_changed(source: Source) -> Script:
    """A pending order's shipping address changed to one with a second line."""
    order, who = _cancellable(source, 10)
    oid = order["order_id"]
    moved = {"order_id": oid, **NEW_ADDRESS}
    return script(
        verify_by_email(who),
        Say(f"Please change the shipping address of order {oid} to {spoken(NEW_ADDRESS)}",
            plan("modify_pending_order_address", **moved), proposed(spoken(NEW_ADDRESS))),
        Say("yes", expect=EXECUTED),
        writes=(write("modify_pending_order_address", **moved),), customer=who.user_id,
    )


@conversation
def an_address_without_a_second_line(source: Source) -> Script:
    """A new shipping address without a second line (address2 empty, as the catalog allows) is proposed."""
    order, who = _cancellable(source, 11)
    oid = order["order_id"]
    moved = {"order_id": oid, **NO_SECOND_LINE}
    return script(
        verify_by_email(who),
        Say(f"Please change the shipping address of order {oid} to {spoken(NO_SECOND_LINE)}",
            plan("modify_pending_order_address", **moved), proposed(spoken(NO_SECOND_LINE))),
        Say("yes", expect=EXECUTED),
        writes=(write("modify_pending_order_address", **moved),), customer=who.user_id,
    )


@conversation
def the_zip_of_a_new_address_asked_for(source: Source) -> Script:
    """An address without its zip: the zip is asked for, never guessed; given, proposed, done."""
    order, who = _cancellable(source, 12)
    oid = order["order_id"]
    moved = {"order_id": oid, **NEW_ADDRESS}
    without_zip = {key: value for key, value in moved.items() if key != "zip"}
    return script(
        verify_by_email(who),
        Say(f"Please ship order {oid} to {NEW_ADDRESS['address1']}, {NEW_ADDRESS['address2']}, "
            f"{NEW_ADDRESS['city']}, {NEW_ADDRESS['state']}, {NEW_ADDRESS['country']} instead",
            plan("modify_pending_order_address", **without_zip), asked_for("the zip")),
        Say(f"The zip is {NEW_ADDRESS['zip']}", plan("modify_pending_order_address", **moved),
            proposed(spoken(NEW_ADDRESS))),
        Say("yes", expect=EXECUTED),
        writes=(write("modify_pending_order_address", **moved),), customer=who.user_id,
    )


@conversation
def the_account_address_changed(source: Source) -> Script:
    """The account's default address changed (modify_user_address; the user id is the verified one)."""
    order = first_order(source, lambda o: o["status"] == "pending")
    who = customer_of(source, order)
    moved = {"user_id": who.user_id, **NEW_ADDRESS}
    return script(
        verify_by_email(who),
        Say(f"Please update the address on my account to {spoken(NEW_ADDRESS)}",
            plan("modify_user_address", **moved), proposed("Change your account's default address",
                                                           spoken(NEW_ADDRESS))),
        Press(True, EXECUTED),
        Say("Which address do you have on my account now?", plan("get_user_details"),
            answered(who.user_id, NEW_ADDRESS["address1"])),
        writes=(write("modify_user_address", **moved),), customer=who.user_id,
    )


@conversation
def an_order_paid_with_a_gift_card_instead(source: Source) -> Script:
    """A pending order paid with the customer's gift card instead (its balance covers the total)."""

    def fits(o: Order) -> bool:
        card = gift_card_balance(source, o)
        return small_pending(o) and not_a_gift_card(o) and card is not None and card[1] >= paid_total(o)

    order = first_order(source, fits)
    who = customer_of(source, order)
    oid = order["order_id"]
    card, _ = gift_card_balance(source, order) or ("", 0.0)
    change = {"order_id": oid, "payment_method_id": card}
    return script(
        verify_by_email(who),
        Say(f"Can I pay for order {oid} with my gift card instead?", plan("modify_pending_order_payment", **change),
            proposed(f"Pay order {oid}", card)),
        Say("yes", expect=EXECUTED),
        writes=(write("modify_pending_order_payment", **change),), customer=who.user_id,
    )


@conversation
def an_order_paid_with_paypal_instead_of_a_card(source: Source) -> Script:
    """A pending order paid with a credit card switched to the customer's paypal."""
    order = first_order(source, lambda o: small_pending(o) and paid_with(o, "credit_card")
                        and method_of_kind(source, o, "paypal") is not None)
    who = customer_of(source, order)
    oid = order["order_id"]
    paypal = method_of_kind(source, order, "paypal")
    change = {"order_id": oid, "payment_method_id": paypal}
    return script(
        verify_by_email(who),
        Say(f"Please switch order {oid} to my paypal", plan("modify_pending_order_payment", **change),
            proposed(str(paypal))),
        Press(True, EXECUTED),
        writes=(write("modify_pending_order_payment", **change),), customer=who.user_id,
    )


@conversation
def a_pending_orders_item_changed(source: Source) -> Script:
    """A pending order's item replaced by another option of the same product, paid with the original method."""
    order, item_id, variant_id = swappable(source, "pending", lambda o: small_pending(o) and not_a_gift_card(o)
                                           and distinct_names(o))
    who = customer_of(source, order)
    oid = order["order_id"]
    method = order["payment_history"][0]["payment_method_id"]
    name = item_named(order, item_id)["name"]
    change = {"order_id": oid, "item_ids": [item_id], "new_item_ids": [variant_id], "payment_method_id": method}
    return script(
        verify_by_email(who),
        Say(f"In order {oid}, change the {name} to item {variant_id}, use {method_words(source, order, method)}",
            plan("modify_pending_order_items", **change), proposed(f"In order {oid}, replace {name}")),
        Say("yes", expect=EXECUTED),
        writes=(write("modify_pending_order_items", **change),), customer=who.user_id,
    )


@conversation
def a_delivered_item_returned_to_the_original_method(source: Source) -> Script:
    """A delivered order's item returned, refunded to the method that paid for it."""
    order = first_order(source, lambda o: o["status"] == "delivered" and paid_with(o, "paypal") and distinct_names(o)
                        and paid_total(o) <= APPROVAL_LIMIT)
    who = customer_of(source, order)
    oid = order["order_id"]
    item = order["items"][0]
    method = order["payment_history"][0]["payment_method_id"]
    back = {"order_id": oid, "item_ids": [item["item_id"]], "payment_method_id": method}
    return script(
        verify_by_email(who),
        Say(f"I want to return the {item['name']} from order {oid}, refund to my paypal please",
            plan("return_delivered_order_items", **back),
            proposed(f"Return from order {oid}", item["name"], f"${item['price']:,.2f}")),
        Say("yes", expect=EXECUTED),
        writes=(write("return_delivered_order_items", **back),), customer=who.user_id,
    )


@conversation
def delivered_items_returned_to_a_gift_card(source: Source) -> Script:
    """Two items returned, refunded to the customer's gift card."""
    order = first_order(source, lambda o: o["status"] == "delivered" and paid_with(o, "credit_card")
                        and distinct_names(o) and len(o["items"]) >= 2 and paid_total(o) <= APPROVAL_LIMIT
                        and method_of_kind(source, o, "gift_card") is not None)
    who = customer_of(source, order)
    oid = order["order_id"]
    first, second = order["items"][:2]
    card = method_of_kind(source, order, "gift_card")
    back = {"order_id": oid, "item_ids": [first["item_id"], second["item_id"]], "payment_method_id": card}
    return script(
        verify_by_email(who),
        Say(f"Return the {first['name']} and the {second['name']} from order {oid}, refund to my gift card",
            plan("return_delivered_order_items", **back), proposed(first["name"], second["name"], str(card))),
        Press(True, EXECUTED),
        writes=(write("return_delivered_order_items", **back),), customer=who.user_id,
    )


@conversation
def a_delivered_item_exchanged(source: Source) -> Script:
    """A delivered order's item exchanged for another option of the product."""
    order, item_id, variant_id = swappable(source, "delivered", lambda o: paid_with(o, "credit_card")
                                           and distinct_names(o))
    who = customer_of(source, order)
    oid = order["order_id"]
    method = order["payment_history"][0]["payment_method_id"]
    name = item_named(order, item_id)["name"]
    change = {"order_id": oid, "item_ids": [item_id], "new_item_ids": [variant_id], "payment_method_id": method}
    return script(
        verify_by_email(who),
        Say(f"I'd like to exchange the {name} from order {oid} for item {variant_id}, "
            f"with {method_words(source, order, method)} for any difference",
            plan("exchange_delivered_order_items", **change), proposed(f"Exchange from order {oid}", name)),
        Say("yes", expect=EXECUTED),
        writes=(write("exchange_delivered_order_items", **change),), customer=who.user_id,
    )


@conversation
def the_refund_method_of_a_return_asked_for(source: Source) -> Script:
    """A return without the refund's method: asked for with the customer's methods; given, proposed, done."""
    order = first_order(source, lambda o: o["status"] == "delivered" and paid_with(o, "paypal") and distinct_names(o)
                        and paid_total(o) <= APPROVAL_LIMIT and len(o["items"]) >= 2)
    who = customer_of(source, order)
    oid = order["order_id"]
    item = order["items"][-1]
    method = order["payment_history"][0]["payment_method_id"]
    back = {"order_id": oid, "item_ids": [item["item_id"]], "payment_method_id": method}
    return script(
        verify_by_email(who),
        Say(f"I'd like to return the {item['name']} from order {oid}",
            plan("return_delivered_order_items", order_id=oid, item_ids=[item["item_id"]]),
            asked_for("which payment method", method)),
        Say("Refund the return to my paypal", plan("return_delivered_order_items", **back),
            proposed(f"Return from order {oid}", item["name"], method)),
        Say("yes", expect=EXECUTED),
        writes=(write("return_delivered_order_items", **back),), customer=who.user_id,
    )


@conversation
def an_item_id_from_an_earlier_message_still_counts(source: Source) -> Script:
    """The new item's id given in the request, the payment method asked for and given with words that
    continue the exchange: the exchange is proposed with that item (the earlier message's id counts)."""
    order, item_id, variant_id = swappable(source, "delivered", lambda o: paid_with(o, "paypal")
                                           and distinct_names(o))
    who = customer_of(source, order)
    oid = order["order_id"]
    method = order["payment_history"][0]["payment_method_id"]
    name = item_named(order, item_id)["name"]
    change = {"order_id": oid, "item_ids": [item_id], "new_item_ids": [variant_id], "payment_method_id": method}
    without_method = {key: value for key, value in change.items() if key != "payment_method_id"}
    return script(
        verify_by_email(who),
        Say(f"Exchange the {name} from order {oid} for {variant_id} please",
            plan("exchange_delivered_order_items", **without_method), asked_for("which payment method")),
        Say(f"Use {method_words(source, order, method)} for the exchange",
            plan("exchange_delivered_order_items", **change), proposed(f"Exchange from order {oid}", name)),
        Say("yes", expect=EXECUTED),
        writes=(write("exchange_delivered_order_items", **change),), customer=who.user_id,
    )


@conversation
def two_changes_in_one_conversation(source: Source) -> Script:
    """The account address changed, then an order cancelled: both done, in that order."""
    order, who = _cancellable(source, 13)
    oid = order["order_id"]
    moved = {"user_id": who.user_id, **NEW_ADDRESS}
    cancel = {"order_id": oid, "reason": "no longer needed"}
    return script(
        verify_by_email(who),
        Say(f"Update my account address to {spoken(NEW_ADDRESS)}", plan("modify_user_address", **moved), proposed()),
        Say("yes", expect=EXECUTED),
        Say(f"And cancel order {oid}, I no longer need it", plan("cancel_pending_order", **cancel), proposed(oid)),
        Say("yes", expect=EXECUTED),
        writes=(write("modify_user_address", **moved), write("cancel_pending_order", **cancel)), customer=who.user_id,
    )


# Approvals: above the tenant's limit, the yes sends the action to an agent; nothing changes until approved.


def _big_pending(source: Source) -> Order:
    return first_order(source, lambda o: o["status"] == "pending" and single_payment(o)
                       and paid_total(o) > APPROVAL_LIMIT)


@conversation
def a_big_cancel_waits_for_an_agent(source: Source) -> Script:
    """A cancel refunding more than $5,000: the proposal says an agent must approve; after the yes it
    waits for them, and nothing changes."""
    order = _big_pending(source)
    who = customer_of(source, order)
    oid = order["order_id"]
    return script(
        verify_by_email(who),
        Say(f"Cancel order {oid}, I ordered it by mistake",
            plan("cancel_pending_order", order_id=oid, reason="ordered by mistake"),
            proposed("needs an agent's approval")),
        Say("yes", expect=AWAITING_APPROVAL),
        Say(f"Is order {oid} cancelled yet?", plan("get_order_details", order_id=oid),
            answered(oid, f"Order {oid} is pending")),
        customer=who.user_id,
    )


@conversation
def a_big_cancel_approved_by_an_agent(source: Source) -> Script:
    """The agent approves: the cancel runs then, once, and the customer's next question sees it."""
    order = _big_pending(source)
    who = customer_of(source, order)
    oid = order["order_id"]
    cancel = {"order_id": oid, "reason": "no longer needed"}
    return script(
        verify_by_email(who),
        Say(f"Cancel order {oid}, no longer needed", plan("cancel_pending_order", **cancel),
            proposed("needs an agent's approval")),
        Press(True, AWAITING_APPROVAL),
        AgentDecides(approve=True, state="SUCCEEDED"),
        Say(f"Has my order {oid} been cancelled?", plan("get_order_details", order_id=oid),
            answered(oid, f"Order {oid} is cancelled")),
        writes=(write("cancel_pending_order", **cancel),), customer=who.user_id,
    )


@conversation
def a_big_return_rejected_by_an_agent(source: Source) -> Script:
    """A return refunding more than $5,000, rejected by the agent: it never runs."""
    order = first_order(source, lambda o: o["status"] == "delivered" and not_a_gift_card(o)
                        and expensive_pair(o) is not None)
    who = customer_of(source, order)
    oid = order["order_id"]
    first, second = expensive_pair(order) or []
    method = order["payment_history"][0]["payment_method_id"]
    back = {"order_id": oid, "item_ids": [first["item_id"], second["item_id"]], "payment_method_id": method}
    return script(
        verify_by_email(who),
        Say(f"Return the {first['name']} and the {second['name']} from order {oid}, refund to "
            f"{method_words(source, order, method)}", plan("return_delivered_order_items", **back),
            proposed("needs an agent's approval")),
        Say("yes", expect=AWAITING_APPROVAL),
        AgentDecides(approve=False, state="REJECTED"),
        customer=who.user_id,
    )

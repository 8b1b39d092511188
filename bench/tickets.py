"""Templated customer-support tickets with their true category, for benchmarks that need realistic text.

Four categories, six templates each, slots filled from small word lists; every ticket ends with its number
so texts are unique. ``with_names`` signs each ticket with a full name drawn from twelve first and twelve
last names of several origins, so PII benchmarks know exactly which name each text contains.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LABELS = ("billing", "shipping", "technical", "account")
TEMPLATES = {
    "billing": ("I was charged twice for my {plan} subscription this month.",
                "Invoice {ref} shows {amount}, but my plan costs less than that.",
                "Please refund the {amount} charge on my credit card.",
                "Why did my monthly bill go up to {amount}?",
                "I need a corrected invoice for order {ref} with our VAT number.",
                "The discount code was not applied when I paid for the {plan} plan."),
    "shipping": ("My package for order {ref} has not arrived yet.",
                 "The courier left my parcel at the wrong address.",
                 "Can I change the delivery address for order {ref}?",
                 "Tracking for order {ref} has not updated in {days} days.",
                 "The box for order {ref} arrived damaged and the item is broken.",
                 "How long does express delivery to {city} take?"),
    "technical": ("The app crashes every time I open the {feature} screen.",
                  "I get error {code} when syncing my files.",
                  "The {device} will not connect to wifi after the latest update.",
                  "Pages load very slowly since yesterday, even on a fast connection.",
                  "Export to {fmt} produces an empty file.",
                  "Notifications stopped working on my {device}."),
    "account": ("I cannot log in after resetting my password.",
                "Please change the email address on my account.",
                "How do I delete my account and all my data?",
                "My account was locked after too many login attempts.",
                "I want to add a second user to my {plan} plan.",
                "Two-factor codes are not accepted when I sign in."),
}
FILL = {"plan": ("Basic", "Pro", "Team", "annual"), "ref": tuple(f"A{n}" for n in range(1000, 9999, 7)),
        "amount": ("$19.99", "$49.00", "EUR 120", "$7.50"), "days": ("3", "5", "10"),
        "city": ("Lyon", "Austin", "Osaka", "Leeds"), "feature": ("settings", "reports", "billing", "search"),
        "code": ("E42", "503", "SYNC-7", "0x80070005"), "device": ("tablet", "router", "phone", "smart TV"),
        "fmt": ("CSV", "PDF", "Excel")}
# Out-of-template probe: phrasings that appear in none of bench/tickets.py's 24 templates (10 per label).
NOVEL = {
    "billing": ["My card got billed two times for one purchase, please fix this.",
                "The amount on my receipt does not match the price on your website.",
                "Can you cancel the renewal fee you took from my bank account yesterday?",
                "I was promised a partial refund last week but have not seen the money.",
                "Your pricing page says 10 dollars but I paid 15.",
                "Need a copy of last year's payment statements for my accountant.",
                "There is an unknown charge from your company on my statement.",
                "Please switch my payment method from PayPal to bank transfer.",
                "I was charged after I cancelled my trial.",
                "Does the yearly subscription include tax or is that added at checkout?"],
    "shipping": ["The delivery guy never showed up even though the website says delivered.",
                 "Is it possible to ship to a PO box in Canada?",
                 "My order has been stuck in customs for two weeks.",
                 "Half of the items were missing from the box I received.",
                 "When will my shipment leave the warehouse?",
                 "The parcel was returned to sender, can you resend it?",
                 "I need the package before Friday, can you speed up the shipping?",
                 "The tracking number you emailed me does not work on the carrier site.",
                 "Wrong size was sent to me, how do I send it back?",
                 "Do you deliver on weekends to rural areas?"],
    "technical": ["The website shows a blank white page when I click checkout.",
                  "Uploading photos fails with a timeout every time.",
                  "My printer is not detected by your desktop software.",
                  "After installing version 3.2 the program freezes on startup.",
                  "The search bar returns no results even for exact product names.",
                  "Video playback stutters and the sound is out of sync.",
                  "The API returns 500 Internal Server Error for every request.",
                  "Bluetooth pairing with my headphones keeps dropping.",
                  "Dark mode makes the text unreadable in the dashboard.",
                  "The battery drains overnight since the firmware upgrade."],
    "account": ["I forgot my username, how can I recover it?",
                "Someone else may have accessed my profile, please secure it.",
                "How do I change the phone number linked to my login?",
                "I would like to merge my two profiles into one.",
                "Please remove my colleague's access, she left the company.",
                "The verification email never arrives when I sign up.",
                "Can I rename my organisation in the account settings?",
                "I want to transfer ownership of the workspace to my manager.",
                "My profile picture and display name keep resetting.",
                "Please unlink my Google sign-in from my profile."],
}
FIRST = ("John", "Maria", "Wei", "Aisha", "Carlos", "Olga", "Liam", "Fatima", "Hiroshi", "Emma", "Pierre", "Ngozi")
LAST = ("Smith", "Garcia", "Zhang", "Khan", "Silva", "Petrova", "Murphy", "Haddad", "Tanaka", "Johnson",
        "Dubois", "Okafor")


@dataclass(frozen=True, slots=True)
class Ticket:
    text: str
    label: str
    name: str | None = None


def tickets(count: int, *, seed: int = 1, with_names: bool = False) -> list[Ticket]:
    rng = random.Random(seed)
    out = []
    for number in range(1, count + 1):
        label = rng.choice(LABELS)
        text = rng.choice(TEMPLATES[label]).format(**{slot: rng.choice(words) for slot, words in FILL.items()})
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}" if with_names else None
        signed = f"{text} Thanks, {name}." if name else text
        out.append(Ticket(f"{signed} (ticket {number})", label, name))
    return out

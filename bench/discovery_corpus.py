"""The discovery benchmark's corpus: 1,000 agents as providers describe them, and requests as users ask them.

50 skills x 20 audiences = 1,000 agents, each the one agent of its (skill, audience): "Extracts line items and
totals from supplier invoices, for hospitals and healthcare providers". A request names the same need in a
user's words: "pull the amounts out of a bill we received at our clinic", so exactly one agent is right. Provider
and user phrasings were written apart, avoiding each other's words (bench/discovery.py measures how far that
held). Everything is drawn from a seeded random.Random: the same seed gives the same corpus.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# (skill id, skill name, how providers describe it, how users ask for it)
SKILLS: list[tuple[str, str, list[str], list[str]]] = [
    ("invoice-extraction", "Invoice extraction",
     ["Extracts line items and totals from supplier invoices",
      "Parses invoice documents into structured fields: vendor, tax, line items, totals"],
     ["pull the amounts out of a bill we received", "what do we owe on this purchase receipt",
      "turn this bill from a seller into a spreadsheet of costs"]),
    ("translation", "Document translation",
     ["Translates documents and web pages between languages",
      "Machine translation of text into French, German, Spanish and Japanese"],
     ["put this letter into another tongue", "I need this site readable by Italian speakers",
      "convert my email so a foreign reader understands it"]),
    ("shipment-tracking", "Shipment tracking",
     ["Tracks parcels and reports shipment status and estimated arrival",
      "Real-time tracking of packages across carriers with delivery estimates"],
     ["where is my order right now", "has the box I mailed reached its destination",
      "when will my stuff get here"]),
    ("unit-test-generation", "Unit test generation",
     ["Writes unit tests for Python functions",
      "Generates test suites with high code coverage for software modules"],
     ["check my program automatically before I merge it", "make sure this routine doesn't break later",
      "I want pytest cases for my script"]),
    ("meeting-scheduling", "Meeting scheduling",
     ["Books meeting rooms and sends calendar invitations",
      "Schedules meetings by finding free slots in attendees' calendars"],
     ["set up a call with my team next week", "find a time when everyone is available to talk",
      "arrange a get-together with colleagues"]),
    ("sentiment-analysis", "Sentiment analysis",
     ["Classifies the sentiment of reviews and social media posts",
      "Detects positive, negative or neutral opinion in customer feedback"],
     ["are people happy or angry about our product", "tell me how buyers feel from these comments",
      "which tweets are complaints"]),
    ("summarisation", "Summarisation",
     ["Summarises long documents into short abstracts", "Condenses reports and articles into key points"],
     ["give me the gist of this paper", "too long, didn't read: shorten this for me",
      "what are the main takeaways of this lengthy memo"]),
    ("resume-screening", "Resume screening",
     ["Screens resumes and ranks candidates against job requirements",
      "Parses CVs and matches applicants to open positions"],
     ["which of these people should we interview", "sort the job seekers by how well they fit the role",
      "filter the folks who applied for the engineer vacancy"]),
    ("fraud-detection", "Fraud detection",
     ["Flags fraudulent card transactions in real time",
      "Detects suspicious payment activity and account takeover"],
     ["was this purchase made by a thief", "spot stolen credit usage on our store",
      "alert me when someone misuses a shopper's money"]),
    ("speech-transcription", "Speech transcription",
     ["Transcribes audio recordings into text",
      "Converts speech from calls and meetings into written transcripts"],
     ["write down what was said in this voice memo", "type out the podcast episode",
      "I need words on paper from this interview tape"]),
    ("image-captioning", "Image captioning",
     ["Generates descriptive captions for images",
      "Describes photos in natural language for accessibility alt text"],
     ["say what is in this picture", "label my snapshots so blind users know what they show",
      "explain the contents of this jpeg"]),
    ("code-review", "Code review",
     ["Reviews pull requests and points out bugs and style issues",
      "Static analysis and review comments for source code changes"],
     ["look over my diff before I ship it", "find mistakes in the patch I wrote",
      "give feedback on my programming edits"]),
    ("tax-calculation", "Tax calculation",
     ["Calculates sales tax and VAT for orders across jurisdictions",
      "Computes tax rates and amounts by region and product category"],
     ["how much should we charge the government on this sale", "figure out the levy for a purchase shipped to Ohio",
      "what duty applies to selling shoes in Germany"]),
    ("sql-generation", "SQL generation",
     ["Turns natural language questions into SQL queries",
      "Generates database queries from plain English requests"],
     ["ask our tables how many users signed up last month", "write the select statement to pull top customers",
      "I want numbers from postgres without coding"]),
    ("email-drafting", "Email drafting",
     ["Drafts professional emails from short notes", "Writes business email replies in a chosen tone"],
     ["help me answer this message politely", "compose a note to my boss asking for leave",
      "turn my bullet points into a letter to a client"]),
    ("contract-review", "Contract review",
     ["Reviews contracts and flags risky clauses",
      "Analyses legal agreements for liability, termination and indemnity terms"],
     ["is there anything dangerous in this deal paperwork", "check the fine print before I sign",
      "spot bad conditions in our lease"]),
    ("ticket-triage", "Support ticket triage",
     ["Routes customer support tickets to the right team",
      "Classifies incoming help desk requests by urgency and topic"],
     ["who should handle this complaint from a buyer", "sort the inbox of user problems by how pressing they are",
      "send each service question to the correct department"]),
    ("product-recommendation", "Product recommendations",
     ["Recommends products based on browsing and purchase history",
      "Personalised item suggestions for online shoppers"],
     ["what else might this visitor want to buy", "suggest things a client would like",
      "show people goods similar to what they viewed"]),
    ("demand-forecasting", "Demand forecasting",
     ["Forecasts product demand from historical sales",
      "Predicts future inventory needs with time-series models"],
     ["how many units will we sell next quarter", "estimate how much we should reorder before winter",
      "project how busy the coming months will be"]),
    ("metrics-anomalies", "Metrics anomaly detection",
     ["Detects anomalies in server metrics and logs",
      "Alerts on unusual spikes in monitoring time series"],
     ["tell me when our machines behave strangely", "catch weird jumps in CPU graphs",
      "notice outages before users do"]),
    ("form-filling", "Form filling",
     ["Fills in PDF forms from structured data", "Populates application forms automatically from a database"],
     ["complete this paperwork for me using our records", "put the client details into the blank template",
      "auto-complete the government documents"]),
    ("background-removal", "Background removal",
     ["Removes backgrounds from product photos", "Cuts out subjects from images and makes transparent PNGs"],
     ["make the picture of my shoe sit on white", "erase everything behind the person in this shot",
      "clean up item pictures for the catalogue"]),
    ("ocr", "Text recognition (OCR)",
     ["Optical character recognition for scanned documents", "Extracts text from images and scanned pages"],
     ["read the words off this photo of a sign", "make my scans searchable",
      "turn a picture of a page into editable writing"]),
    ("language-tutoring", "Language tutoring",
     ["Conversational tutor for learning a foreign language",
      "Practices vocabulary and grammar with language learners"],
     ["help me get better at speaking Spanish", "quiz me on new words in Korean",
      "I want to study Italian by chatting"]),
    ("recipe-generation", "Recipe generation",
     ["Creates recipes from available ingredients", "Suggests meal plans and cooking instructions"],
     ["what can I make with eggs, rice and spinach", "plan dinners for the week",
      "tell me what to prepare for supper tonight"]),
    ("travel-planning", "Travel planning",
     ["Plans trips with flights, hotels and itineraries", "Builds travel itineraries and books accommodation"],
     ["organise my holiday to Lisbon", "where should I stay and what should I see in Rome",
      "sort out a vacation for four days in Tokyo"]),
    ("security-audit", "Security audit",
     ["Audits systems for weak passwords and misconfigurations",
      "Scans infrastructure for security vulnerabilities"],
     ["are our servers easy to hack", "find holes attackers could use in our network",
      "check whether our logins are safe"]),
    ("social-scheduling", "Social media scheduling",
     ["Schedules posts across social media accounts",
      "Publishes and times content on Twitter, LinkedIn and Instagram"],
     ["put our announcements out on our channels at the best hour", "queue up updates for our followers",
      "share the launch news online every morning"]),
    ("medical-coding", "Medical coding",
     ["Assigns ICD-10 and CPT codes to clinical notes",
      "Codes diagnoses and procedures for healthcare billing"],
     ["turn the doctor's write-up into invoice numbers", "label the patient visit for the insurer",
      "what classification goes with this illness"]),
    ("data-cleaning", "Data cleaning",
     ["Cleans and deduplicates tabular data", "Fixes missing values, typos and duplicates in spreadsheets"],
     ["tidy up this messy CSV", "remove repeated rows from our client list", "fill the gaps in my table"]),
    ("chart-generation", "Chart generation",
     ["Generates charts and plots from data", "Creates visualisations such as bar, line and pie charts"],
     ["draw a graph of monthly revenue", "make a picture of these numbers", "show the trend visually"]),
    ("nda-drafting", "NDA drafting",
     ["Drafts non-disclosure agreements and simple contracts",
      "Generates legal templates for confidentiality agreements"],
     ["write up a secrecy deal for a new partner", "I need a paper to keep our talks private",
      "prepare the private terms before the pitch"]),
    ("plagiarism-detection", "Plagiarism detection",
     ["Detects plagiarism by comparing texts against sources",
      "Checks essays for copied content and originality"],
     ["did this student copy their homework", "find out if the article was lifted from the web",
      "is this paper someone else's writing"]),
    ("weather-forecast", "Weather forecasting",
     ["Provides local weather forecasts and alerts", "Predicts temperature, rain and wind for any location"],
     ["will it be sunny tomorrow in Paris", "should I take an umbrella this afternoon",
      "is a storm coming this weekend"]),
    ("equity-research", "Equity research",
     ["Analyses stocks and company financial statements", "Equity research reports with valuation and ratios"],
     ["is Apple a good buy right now", "should I invest in this share", "how healthy are the books of this firm"]),
    ("address-validation", "Address validation",
     ["Validates and standardises postal addresses", "Verifies mailing addresses and corrects formatting"],
     ["is this place where we send letters real", "clean up the street and zip code a shopper typed",
      "make sure the drop-off location exists"]),
    ("music-composition", "Music composition",
     ["Composes background music tracks", "Generates royalty-free melodies and soundtracks"],
     ["make a tune for my video", "I need a song to play behind my podcast", "create some beats for a game"]),
    ("logo-design", "Logo design",
     ["Designs logos and brand marks", "Creates brand identity graphics and icons"],
     ["make an emblem for my bakery", "draw a symbol that represents my startup",
      "come up with a visual sign for our team"]),
    ("keyword-research", "SEO keyword research",
     ["Finds SEO keywords and search volumes",
      "Search engine optimisation: keyword ideas and ranking difficulty"],
     ["what terms do people type into Google to find shoes", "help my site show up higher on web results",
      "which phrases should my blog target"]),
    ("churn-prediction", "Churn prediction",
     ["Predicts which customers are likely to churn", "Scores subscriber retention risk from usage data"],
     ["who is about to cancel their plan", "which clients might leave us soon", "find users we're losing"]),
    ("payment-reminders", "Payment reminders",
     ["Sends automated payment reminders for overdue invoices", "Dunning emails and follow-ups for unpaid bills"],
     ["nudge clients who haven't paid us", "chase the late accounts", "remind people their balance is past due"]),
    ("subtitle-generation", "Subtitle generation",
     ["Generates subtitles and captions for videos", "Creates timed SRT caption files from video audio"],
     ["add on-screen words to my clip", "make my film accessible to deaf viewers",
      "put text at the bottom of this movie"]),
    ("route-optimisation", "Route optimisation",
     ["Optimises delivery routes for vehicle fleets", "Plans the shortest multi-stop routes for drivers"],
     ["what order should my vans visit the shops in", "find the quickest way round all our drop-offs",
      "cut the miles our couriers drive"]),
    ("faq-answering", "FAQ answering",
     ["Answers frequently asked questions from a knowledge base",
      "Customer service chatbot grounded in help centre articles"],
     ["reply to common queries from visitors automatically",
      "let people ask about opening hours and get a response", "handle the same repeated inquiries without staff"]),
    ("grammar-correction", "Grammar correction",
     ["Corrects grammar and spelling mistakes", "Proofreads text for errors and punctuation"],
     ["fix my English", "make this paragraph read properly", "check my essay for typos"]),
    ("expense-categorisation", "Expense categorisation",
     ["Categorises business expenses from bank transactions", "Classifies spending into accounting categories"],
     ["sort out what we spent money on last month", "put each card charge into the right bucket for the bookkeeper",
      "label my outgoings for the bookkeeper"]),
    ("patent-search", "Patent search",
     ["Searches patent databases for prior art", "Finds related patents and intellectual property filings"],
     ["has anyone already invented this", "check if my idea is protected by someone else",
      "look for earlier inventions like my gadget"]),
    ("text-to-speech", "Text to speech",
     ["Converts text to natural-sounding speech", "Synthesises voice audio from written scripts"],
     ["read my article out loud", "make an audio version of this blog", "I want a narrator for my e-book"]),
    ("stock-monitoring", "Stock level monitoring",
     ["Monitors inventory levels and triggers reorders", "Tracks warehouse stock and alerts on shortages"],
     ["tell me when we're running low on supplies", "keep an eye on what's left on the shelves",
      "buy more when items run out"]),
    ("employee-onboarding", "Employee onboarding",
     ["Guides new employees through onboarding tasks", "Automates new hire paperwork, accounts and training"],
     ["help a fresh recruit get started in their first week", "set up everything a newcomer needs on day one",
      "welcome the people who just joined"]),
]

# (how providers name an audience, how users say who they are)
AUDIENCES: list[tuple[str, list[str]]] = [
    ("for hospitals and healthcare providers", ["at our clinic", "for my medical practice"]),
    ("for law firms and legal departments", ["at our attorney's office", "for a solicitor"]),
    ("for retailers and e-commerce shops", ["for my online store", "at our webshop"]),
    ("for banks and financial institutions", ["for our lender", "at the credit union"]),
    ("for schools and universities", ["for my students", "at our college"]),
    ("for manufacturers and factories", ["at our plant", "for the production line"]),
    ("for restaurants and hospitality", ["for my cafe", "at our hotel"]),
    ("for government agencies", ["for the council", "at our ministry"]),
    ("for real estate agencies", ["for my property listings", "for our landlords"]),
    ("for transport and freight operators", ["for our trucking business", "for the haulage fleet"]),
    ("for insurance companies", ["for our insurer", "at the underwriting desk"]),
    ("for non-profit organisations and charities", ["for our foundation", "for the volunteers"]),
    ("for software startups", ["for our tech firm", "for a young app business"]),
    ("for energy and utility providers", ["for the power firm", "at our electricity supplier"]),
    ("for airlines and travel agencies", ["for our flights business", "for the tour operator"]),
    ("for pharmaceutical companies", ["for a drug maker", "at our medicines lab"]),
    ("for construction firms", ["for our building contractor", "at the job site"]),
    ("for media and publishing houses", ["for our newspaper", "for the magazine"]),
    ("for farms and agriculture businesses", ["for my ranch", "for our growers"]),
    ("for telecom operators", ["for our mobile carrier", "at the phone network"]),
]

EXTRAS = ["Available through a simple API.", "GDPR compliant.", "Batch and real-time modes.",
          "Hosted in the EU.", "Usage-based pricing.", "Enterprise support included.", ""]
BRANDS = ["Zen", "Orbi", "Nova", "Kite", "Lumo", "Vexa", "Quill", "Tarn", "Mira", "Brio", "Cairn", "Dune", "Ember",
          "Fjord", "Gale", "Helio", "Iris", "Juno", "Kora", "Lyra"]
STOPWORDS = frozenset("a an and the of to in on for at by with my our this that is are be i we me us it its "
                      "what which who when where how do did should will can".split())


@dataclass(frozen=True)
class Agent:
    index: int
    name: str
    skill_id: str
    skill_name: str
    description: str


@dataclass(frozen=True)
class Request:
    text: str
    agent: int
    """Index of the one right agent."""


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def content_words(text: str) -> set[str]:
    return words(text) - STOPWORDS


def build(seed: int = 16, requests: int = 500) -> tuple[list[Agent], list[Request]]:
    """The agents (skill-major: agent i is skill i // 20, audience i % 20) and ``requests`` requests."""
    rng = random.Random(seed)
    agents = []
    for s, (skill_id, skill_name, provider, _) in enumerate(SKILLS):
        for a, (audience, _) in enumerate(AUDIENCES):
            index = s * len(AUDIENCES) + a
            description = f"{rng.choice(provider)}, {audience}. {rng.choice(EXTRAS)}".strip()
            name = f"{rng.choice(BRANDS)}{skill_id.split('-')[0].capitalize()}-{a}"
            agents.append(Agent(index, name, skill_id, skill_name, description))
    asked = []
    per_skill = requests // len(SKILLS)
    for s, (_, _, _, user) in enumerate(SKILLS):
        for a in rng.sample(range(len(AUDIENCES)), per_skill):
            asked.append(Request(f"{rng.choice(user)} {rng.choice(AUDIENCES[a][1])}", s * len(AUDIENCES) + a))
    return agents, asked


def agent_words(agent: Agent) -> set[str]:
    """Every word of what the registry indexes for ``agent`` (name, description, skill id and name)."""
    return words(" ".join([agent.name, agent.description, agent.skill_id, agent.skill_name]))

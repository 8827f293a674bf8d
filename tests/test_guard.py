"""The guard's rules, one positive (rejects) and one negative (lets a paraphrase through) example each."""

import pytest

from proxy.guard import find_conflict
from proxy.guard.rules import Pair, someone


@pytest.mark.parametrize(
    ("cached", "incoming", "rule"),
    [
        ("How many seats are left on the 3 o'clock bus?", "How many seats are left on the 4 o'clock bus?", "number"),
        ("Wake me at 6am", "Wake me at 6pm", "number"),
        ("What changed in release v2.1?", "What changed in release v2.2?", "number"),
        ("Is parking free for two hours?", "Is parking free for three hours?", "number"),
        ("Is the gym busy on Tuesdays?", "Is the gym busy on Thursdays?", "calendar"),
        ("Should I water the lawn?", "Should I not water the lawn?", "negation"),
        ("Can I return shoes I have worn?", "Can I return shoes I haven't worn?", "negation"),
        ("Is this mushroom edible?", "Is this mushroom inedible?", "negation"),
        ("Is the museum open on bank holidays?", "Is the museum closed on bank holidays?", "polarity"),
        ("How do I enable dark mode?", "How do I disable dark mode?", "polarity"),
        ("Should I buy shares before the dividend date?", "Should I sell shares before the dividend date?", "polarity"),
        ("Who founded Tesla?", "Who founded Nvidia?", "entity"),
        ("How do I install node on ubuntu?", "How do I install node on windows?", "entity"),
        ("Translate this from German to Italian", "Translate this from Italian to German", "direction"),
        ("How do I merge my feature branch into main?", "How do I merge main into my feature branch?", "direction"),
        ("Can my employer reduce my hours without my agreement?",
         "Can I reduce my hours without my employer's agreement?", "persons"),  # the same parties, the other acts
        ("How do I compress a folder into a tar.gz?", "How do I extract a tar.gz file?", "polarity"),
        ("How do I get child maintenance from my ex-partner?", "How do I pay child maintenance to my ex-partner?",
         "parties"),
        ("Which vaccines does my dog need?", "Which vaccines does my cat need?", "scope"),
        ("How much is a gym pass for adults?", "How much is a gym pass for seniors?", "scope"),
        ("What are the side effects of aspirin?", "What are the side effects of aspirin in pregnancy?", "scope"),
        ("Can I take leave on Fridays?", "Can interns take leave on Fridays?", "scope"),
        ("What does my boat licence cover?", "What does my fishing licence cover?", "substitution"),
        ("Can I swap seats within the first hour?", "Can I swap seats after the first hour?", "substitution"),
        ("How do I freeze my gym membership?", "How do I restart my gym membership?", "substitution"),
        ("Where is the nearest shop?", "Where is the nearest bakery?", "substitution"),  # WordNet knows no such pair
        ("How do I get a refund on a gift?", "How do I get a refund on a gift card?", "modifier"),
        ("Does my warranty cover water damage?", "Does my extended warranty cover water damage?", "modifier"),
        ("How do I add money to my ISA?", "How do I take money out of my ISA?", "polarity"),
        ("Is there an exit fee for leaving British Gas for Octopus?",
         "If I move from Octopus over to British Gas, will I be charged to leave?", "parties"),
        ("How do I move money from my Premium Bonds into my bank account?",
         "I'd like to put some of my bank balance into Premium Bonds, how do I do it?", "parties"),
        # "off" names a source as "from" does: the joint account is where money goes on one side, whence on the other.
        ("How do I move money from my ISA into my joint account?",
         "How do I take money off our joint account and put it in my ISA?", "parties"),
        ("How do I mute notifications for one channel?", "How do I mute notifications for all channels?", "polarity"),
        ("How do I pause my gym membership?", "How do I resume my gym membership?", "polarity"),
        ("How do I change the font in this document?", "How do I change the font in all documents?", "polarity"),
        ("How do I reset the password for my own account?", "How do I reset the password for another account?",
         "polarity"),
        ("Can I change the date on my train ticket?", "Can I change the date on my Advance train ticket?",
         "modifier"),
        ("How do I pay money into my savings account?", "How do I take money out of my savings account?",
         "polarity"),
        ("What is the rate for converting pounds to euros?", "What is the rate for converting euros to pounds?",
         "direction"),
        ("How do I book a room at the hotel?", "How do I book an accessible room at the hotel?", "modifier"),
        ("What does my car insurance cover?", "What does my third party only car insurance cover?", "modifier"),
        ("Can I claim compensation from my landlord?", "Can my landlord claim compensation from me?", "persons"),
        ("How much notice do I need to give my landlord?", "How much notice does my landlord need to give me?",
         "persons"),
        ("What documents do I need as a UK resident?", "What documents do I need as a non-UK resident?", "negation"),
        ("How much stamp duty do I pay on my first home?", "How much stamp duty do I pay on a second home?", "ordinal"),
        ("Can I cancel within two weeks?", "Can I cancel within 21 days?", "number"),
        ("Can I pay within a month?", "Can I pay within a week?", "number"),
        ("Is the pharmacy open at 7 in the morning?", "Is the pharmacy open at 7 in the evening?", "number"),
        ("Is the helpline open Monday to Friday?", "Is the helpline open Saturday and Sunday?", "calendar"),
        ("Which expenses can I claim back from work?", "Which expenses can't I claim back from work?", "negation"),
        ("How do I cancel my order?", "I can't cancel my order, what now?", "negation"),  # the same verb
        ("What's the price for members?", "How much does it cost if I'm not a member?", "negation"),
    ],
)
def test_rejects(cached: str, incoming: str, rule: str) -> None:
    assert find_conflict(cached, incoming) == rule


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("How many seats are left on the 3 o'clock bus?", "how many seats are lft on the 3 o'clock bus"),
        ("Wake me at 6am", "Please wake me at 6 am"),
        ("Is parking free for two hours?", "Is parking free for 2 hours?"),
        ("Is the gym busy on Tuesdays?", "Does the gym get busy on Tuesdays?"),
        ("I can't sign in to my account", "I cannot sign in to my account"),
        ("What's the fee for non-residents?", "What's the fee if I'm not a resident?"),
        ("Is the museum open on bank holidays?", "Is the museum open on bank holidays??"),
        ("Who founded Tesla?", "who founded tesla"),
        ("Who founded Tesla?", "WHO FOUNDED TESLA?"),
        ("When does the Wembley box office open?", "When does the Wembly box office open?"),
        ("Translate this sentence from German to Italian", "Please translate this sentence from German to Italian"),
        ("Which vaccines do my kids need?", "Which vaccines do my children need?"),
        ("How do I request a copy of my contract?", "How can I get a copy of my contract?"),
        ("How do I reset my router?", "Hi, quick one: how do I reset my router? Thanks"),
        ("Where can I park near the library?", "Near the library, where can I park?"),
        ("How do I take my name off the mailing list?", "How do I remove myself from the mailing list?"),
        ("My parcel hasn't arrived.", "my parcel hasnt arrived yet"),
        ("Thanks in advance, how do I reset my password?", "How do I reset my password?"),
        ("How do I reset the API rate limit?", "Please tell me how to reset the API rate limit."),
        ("Can I have a refund?", "Can you give me a refund?"),
        ("Can I bring a dog to the hotel?", "Can I bring my dog to the hotel?"),
        ("What is the capital of Peru?", "What is the capital city of Peru?"),
        ("How do I book a table?", "How can I book a table?"),
        ("Who do I call about a leaking pipe?", "Who should I call about a leaking pipe?"),
        ("Why won't my phone charge?", "Why doesn't my phone charge?"),
        ("When does the spring term start?", "When does the spring term begin?"),
        ("How do I get a quote for new windows?", "How do I get a quotation for new windows?"),
        ("When will I receive my refund?", "When will I get my refund?"),
        ("Can I return it within 14 days?", "Can I return it within two weeks?"),
        ("Can I return it within 14 days?", "Is there a 14-day return window?"),
        ("How long does a one hour session last?", "How long does a 60 minute session last?"),
        ("Is the pharmacy open at 7am?", "Is the pharmacy open at seven in the morning?"),
        ("Does the gym open at 19:00?", "Does the gym open at 7pm?"),
        ("Is the helpline open on weekdays?", "Is the helpline open Monday to Friday?"),
        ("Can an 18-year-old buy alcohol in the UK?", "Can an 18 year old buy alcohol in the UK?"),
        ("What is the fastest way to learn touch typing?", "What's the quickest way to learn touch typing?"),
        ("Where is the nearest shop?", "Where is the nearest store?"),
        ("What is the capital of France?", "What is the capital city of France?"),
        ("What's the excess on my contents insurance?", "What is the excess on my contents insurance policy?"),
        ("How do I switch from British Gas to Octopus?", "How do I move to Octopus from British Gas?"),
        ("How do I reset my Gmail password?", "I can't remember my Gmail password, how do I get back in?"),
        ("What's the price for non-members?", "How much does it cost if I'm not a member?"),
        ("The `add_column` method adds a new column to the table at a specified index position.",
         "A specified index position is used by the `add_column` method to incorporate a new column into the table."),
    ],
)
def test_allows_paraphrases(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming) is None


def test_identical_texts_never_conflict() -> None:
    assert find_conflict("Cancel it", "Cancel it") is None


# With the default model's cosine: a one-span swap it scores as near-identical passes unless it could be an opposite.
SWAPS_THAT_PASS = [
    ("How do I apply for a parking permit for my street?", "How do I apply for a parking permit for my road?"),
    ("How do I switch energy supplier?", "How do I change energy supplier?"),
    ("How do I set up a standing order?", "How do I create a standing order?"),
    ("How do I register with a GP surgery?", "How do I sign up with a GP surgery?"),
    ("Does your plan include single sign-on?", "Does your plan come with single sign-on?"),
    ("How do I apply for student finance?", "How do I go about applying for student finance?"),
]
SWAPS_STILL_REJECTED = [
    ("How do I report a lost card?", "How do I report a stolen card?", "substitution"),  # close, not the same
    ("What does my home insurance cover?", "What does my car insurance cover?", "substitution"),
    ("Can I cancel within the cooling-off period?", "Can I cancel after the cooling-off period?", "substitution"),
    ("What does my travel insurance cover?", "What does my travel insurance exclude?", "substitution"),
    ("Which subjects are compulsory at GCSE?", "Which subjects are optional at GCSE?", "substitution"),
    ("Should I water succulents in winter?", "Should I stop watering succulents in winter?", "negation"),
    ("What's the interest rate on your easy access saver?", "What's the interest rate on your fixed rate bond?",
     "substitution"),  # a three-word product for another
]


def _cosine(embedder, a: str, b: str) -> float:
    va, vb = embedder.embed([a, b])
    return float(va @ vb)


@pytest.mark.parametrize(("cached", "incoming"), SWAPS_THAT_PASS)
def test_swaps_the_model_scores_as_the_same_pass(real_embedder, cached: str, incoming: str) -> None:
    similarity = _cosine(real_embedder, cached, incoming)
    assert find_conflict(cached, incoming) is not None  # words alone cannot tell
    assert find_conflict(cached, incoming, similarity) is None
    assert find_conflict(incoming, cached, similarity) is None


@pytest.mark.parametrize(("cached", "incoming", "rule"), SWAPS_STILL_REJECTED)
def test_swaps_that_could_be_opposites_or_other_things_are_rejected(real_embedder, cached: str, incoming: str,
                                                                    rule: str) -> None:
    similarity = _cosine(real_embedder, cached, incoming)
    assert find_conflict(cached, incoming, similarity) == rule
    assert find_conflict(incoming, cached, similarity) == rule


@pytest.mark.parametrize(
    ("cached", "incoming", "rule"),
    [
        ("What's the capital of Australia?", "What's the capital of Austria?", "entity"),  # two letters: a new name
        ("How do I get a refund on a gift?", "How do I get a refund on a gift card?", "modifier"),
        ("Should I water succulents in winter?", "Should I stop watering succulents in winter?", "negation"),
        ("Which foods should I eat before surgery?", "Which foods should I avoid before surgery?", "negation"),
        ("Can I load hundreds of files at once?", "Can I load thousands of files at once?", "number"),
        ("Is option 1) the cheapest?", "Is option 2) the cheapest?", "number"),
        ("How do I check in at the hotel?", "How do I check out of the hotel?", "polarity"),
        ("What changed in v2.1.0?", "What changed in version 2.2.0?", "number"),
        ("Is my version the same as yours?", "Is my version not the same as yours?", "substitution"),
    ],
)
def test_traps_next_to_new_allowances_are_rejected(cached: str, incoming: str, rule: str) -> None:
    assert find_conflict(cached, incoming) == rule


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("How long does delivery take?", "How long does delivery usually take?"),  # an adverb names no new thing
        ("What time does the shop open?", "What time does the shop normally open?"),
        ("How do I stop my annual plan from auto-renewing?",
         "I don't want my yearly subscription to renew automatically, how do I switch that off?"),
        ("If the dataset has no metadata, which labels are used?",
         "In the absence of metadata, which labels are used?"),
        ("When does the Wembley box office open?", "When does the Wembly box office open?"),  # still a slip
        ("By calling enable_propagation(), the default handler can be disabled to avoid double logging.",
         "The default handler can be disabled to prevent double logging by calling enable_propagation()."),
        ("Can I load a dataset with thousands of audio files?",
         "Can I load a dataset with several thousand audio files?"),
        ("The download works in two steps: 1) it downloads the raw files, and 2) then it generates the dataset.",
         "The download is a two-step process: it first downloads the raw files, then it generates the dataset."),
        ("How do I fill out the claim form?", "How do I fill in the claim form?"),
        ("What changed in v2.1.0?", "What changed in version 2.1.0?"),
        ("Using a version that is different from your local one causes issues.",
         "Using a version that is not the same as your local one causes issues."),
    ],
)
def test_new_allowances(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming) is None
    assert find_conflict(incoming, cached) is None


def test_a_qualifier_the_other_side_names_elsewhere_adds_nothing() -> None:
    # "babies" is what "my baby" asks about; the other way round "my" still reads as someone else's case.
    assert find_conflict("What are the symptoms of flu in babies?", "How can I tell if my baby has the flu?") is None
    assert find_conflict("Can I take leave on Fridays?", "Can interns take leave on Fridays?") == "scope"


# Each allowance with the trap beside it that must still be rejected; similarity 0.95 stands for the default
# model's cosine of a close rewording (the swaps it scores that high pass unless they could turn the question round).
ALLOWED_WITH_TRAPS = [
    (("Can I claim Child Benefit if I earn over £60,000?", "Can I claim child benefit if I earn over £60k?"),
     ("Can I claim Child Benefit if I earn over £60,000?", "Can I claim child benefit if I earn over £80k?",
      "number")),
    (("Why hasn't my parcel arrived yet?", "why has'nt my parcel arrived yet"),
     ("Why hasn't my parcel arrived yet?", "why has my parcel arrived", "negation")),
    (("How do I convert a string to an integer in JavaScript?", "How do I turn a string into an integer in JS?"),
     ("How do I convert a string to an integer in JavaScript?", "How do I convert a string to an integer in Java?",
      "entity")),
    (("How do I reverse a string in Python?", "what's the easiest way to reverse a python string"),
     ("Can I take leave on Fridays?", "Can interns take leave on Fridays?", "scope")),
    (("What do I need in order to open an account?", "What do I need to open an account?"),
     ("How do I check in at the hotel?", "How do I check out of the hotel?", "polarity")),
    (("Can you tell whether the file is cached or not?", "Can you tell whether the file is cached?"),
     ("Is the file not cached?", "Is the file cached?", "negation")),
    (("No, the old flag was removed in version 3.", "The old flag was removed in version 3."),
     ("No, it does not support Python 2.", "It supports Python 2.", "negation")),
    (("Does the slice make a zero-copy view?", "Does the slice make a view without any copying?"),
     ("Is it zero-copy?", "Does it copy?", "negation")),
    (("Set the limit to a nonzero value.", "Set the limit to a non-zero value."),
     ("Set the limit to zero.", "Set the limit to a non-zero value.", "number")),
    (("What is ML used for?", "What is machine learning used for?"),
     ("Does the NHS cover it?", "Does Bupa cover it?", "entity")),
    (("How do I stream an IterableDataset?", "How do I stream an Iterable Dataset?"),
     ("Does Dataset support streaming?", "Does IterableDataset support streaming?", "entity")),
    (("Is Pillow a Python library for editing images?", "Is Pillow a Python package that edits images?"),
     ("Can I work from home on Fridays?", "Can I work at the office on Fridays?", "substitution")),
    (("The guide covers Install, Configure, Monitor and Upgrade.",
      "The guide covers installing, configuring, monitoring and upgrading."),
     ("Does it run on Android, iOS and Windows?", "Does it run on Android, iOS and Linux?", "entity")),
    (("Can I build a form without writing any code?",
      "Can I build a form in a way that eliminates the need for coding?"),
     ("Can I build a form without writing any code?", "Can I build a form by writing code?", "negation")),
    # A stopping verb for an ending verb; not when it stops that very verb.
    (("How can I stop my direct debit?", "How do I cancel my direct debit?"),
     ("How can I stop the app closing?", "How can I close the app?", "negation")),
    # Two second poles point the same way; a first pole against a second still turns the question round.
    (("How do I turn off autoplay?", "How do I disable autoplay?"),
     ("How do I turn on autoplay?", "How do I disable autoplay?", "substitution")),
    # A recast sentence that brings in "I" with a verb of its own; another person in place of "I" still differs.
    (("What's included in the basic plan?", "What do I get with the basic plan?"),
     ("What do I get with the basic plan?", "What do my kids get with the basic plan?", "scope")),
    # "in" / "on" / "at" name one place; "within" / "after" still differ.
    (("How do I change my password on the app?", "How do I change my password in the app?"),
     ("Can I swap seats within the first hour?", "Can I swap seats after the first hour?", "substitution")),
]


@pytest.mark.parametrize(("allowed", "trap"), ALLOWED_WITH_TRAPS)
def test_allowances_keep_their_trap(allowed: tuple[str, str], trap: tuple[str, str, str]) -> None:
    a, b = allowed
    assert find_conflict(a, b, 0.95) is None
    assert find_conflict(b, a, 0.95) is None
    cached, incoming, rule = trap
    assert find_conflict(cached, incoming, 0.95) == rule
    assert find_conflict(incoming, cached, 0.95) == rule


def test_initials_must_be_content_words() -> None:
    # "my Lenovo" has the initials of "ML" but says nothing about machine learning.
    assert find_conflict("Does ML need a GPU?", "Does my Lenovo need a GPU?", 0.95) == "entity"


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("What time does the pharmacy open?", "Where is the nearest pharmacy?"),  # a time, a place
        ("Why is my bill so high?", "When is my bill due?"),  # a reason, a time
        ("Who do I call about a gas leak?", "How much does a gas safety check cost?"),  # a person, an amount
        ("How do I get a refund?", "How long does a refund take?"),  # a procedure, a duration
        ("How do I set up a direct debit?", "Why has my direct debit gone up?"),  # a procedure, a reason
        ("How do I adopt a rescue dog?", "What's the adoption fee for a rescue dog?"),  # a procedure, an amount
        ("How do I get a provisional licence?", "How old do I have to be to get a provisional licence?"),  # an age
        ("How do I make a claim for Universal Credit?", "Am I eligible for Universal Credit?"),  # eligibility
        ("How do I apply for planning permission?", "Do I need planning permission for a garden shed?"),  # whether
        ("Is there parking at the hotel?", "How much is parking at the hotel per night?"),  # a yes or no, an amount
        ("Can I pay my bill?", "Why is my bill so high?"),  # a yes or no, a reason
    ],
)
def test_questions_that_want_another_kind_of_answer_conflict(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming, 0.95) == "asks"
    assert find_conflict(incoming, cached, 0.95) == "asks"


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("When does the shop open?", "What time does the shop open?"),
        ("How long does delivery take?", "How many days does delivery take?"),
        ("Where is my order?", "Can you tell me where my parcel is?"),  # "where" inside the clause
        ("Why is the API slow?", "What does it mean when the API is slow?"),  # "when" is no question word here
        ("How do I report a pothole?", "There's a hole in the road outside my house, who do I tell?"),  # whom to tell
        ("How do I get my P60?", "Where can I get my P60?"),  # a procedure's answer says where
        ("How do I claim expenses?", "What's the process for submitting an expense claim?"),  # both procedures
        ("How do I renew my car tax?", "Can I renew my car tax online?"),  # a procedure, no kind
        ("When is my MOT due?", "How can I check the date my MOT runs out?"),  # "how can I check" asks for the date
        ("Do I need a visa for Japan?", "Is a visa required to visit Japan?"),  # both ask whether it is needed
        ("Can I renew my passport online?", "How do I renew my passport online?"),  # a yes or no, a procedure
        ("Is there a pharmacy near the station?", "Where is the nearest pharmacy to the station?"),  # and a place
        ("What do I need to do before the cleaners arrive?", "How should I prepare for the cleaning visit?"),
    ],
)
def test_the_same_kind_of_answer_or_none_in_particular_passes_asks(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming, 0.95) != "asks"
    assert find_conflict(incoming, cached, 0.95) != "asks"


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("How do I join a gym?", "How do I freeze my gym membership?"),  # start, end
        ("How do I install Python on Windows?", "How do I check which version of Python I have installed?"),
        ("How do I get a new phone contract?", "What happens if I cancel my phone contract early?"),
        ("How do I declare my car SORN?", "How do I take my car off SORN?"),
        ("How do I make a git commit?", "How do I change the message of my last git commit?"),
    ],
)
def test_another_stage_of_the_same_thing_conflicts(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming, 0.95) == "action"
    assert find_conflict(incoming, cached, 0.95) == "action"


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("How do I register for VAT?", "How do I sign up for VAT?"),  # one stage, other verbs
        ("How do I change my address with my GP?", "How do I update my address at the surgery?"),
        ("Can I correct a misspelled name on my flight booking?",
         "I spelled my surname wrong when I booked the flight, can it be fixed?"),  # "booked" narrates
        ("How do I check my data usage?", "How can I see how much data I've used?"),  # no stage on one side
        ("How do I cancel a gym membership?", "How do I join a tennis club?"),  # no shared thing: not this rule
    ],
)
def test_one_stage_or_none_passes_action(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming, 0.95) != "action"
    assert find_conflict(incoming, cached, 0.95) != "action"


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("Is my car covered for theft?", "Is my car covered for theft if I left the keys in it?"),
        ("Does my home insurance cover my belongings?",
         "Does my home insurance cover my belongings when I'm travelling abroad?"),
    ],
)
def test_an_added_condition_narrows_the_question(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming, 0.95) == "scope"
    assert find_conflict(incoming, cached, 0.95) == "scope"


def test_a_condition_after_a_recast_opening_narrows_the_question() -> None:
    # "the process" belongs to the opening ("How do I"), not to what is asked.
    cached = "What's the process to renew a driving licence?"
    incoming = "How do I renew my driving licence if I've moved?"
    assert find_conflict(cached, incoming, 0.95) == "scope"
    assert find_conflict(incoming, cached, 0.95) == "scope"


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("How do I back up my whole laptop?", "How do I back up only the documents on my laptop?"),
        ("How do I delete my Instagram account?", "How do I delete a single photo on Instagram?"),
        ("How do I cancel my broadband and TV bundle?", "How do I drop one channel from my TV bundle?"),
        ("Can I get a refund on my train tickets?", "Can I get a refund for just the return ticket?"),
    ],
)
def test_a_part_of_the_whole_is_another_question(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming, 0.95) == "part"
    assert find_conflict(incoming, cached, 0.95) == "part"


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("How do I merge two PDFs into a file?", "How do I merge two PDFs into a single file in Acrobat?"),  # one file
        ("How do I apply for a single person discount?", "I live alone, can I get a discount?"),  # an adjective
        ("Why does the app use so much memory?", "Why does the app use only a little memory?"),  # an amount
    ],
)
def test_wording_that_names_no_part_passes_part(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming, 0.95) != "part"
    assert find_conflict(incoming, cached, 0.95) != "part"


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("How do I get a copy of my birth certificate?", "How do I get a copy of my father's birth certificate?"),
        ("Can I claim travel insurance for myself?", "Can I claim travel insurance for my colleagues?"),
        ("How do I cancel my car insurance policy?", "How do I come off my husband's car insurance policy?"),
    ],
)
def test_another_persons_case_is_another_question(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming, 0.95) == "someone"
    assert find_conflict(incoming, cached, 0.95) == "someone"


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("How do I apply for my son's first passport?", "How do I get my boy his first passport?"),  # both name him
        ("How do I add my wife to my phone contract?", "How do I put my partner on my phone contract?"),
        ("Can I book a table for my birthday?", "Can I reserve a table for my birthday party?"),  # nobody else
        ("Can students get a discount?", "Is there a discount for my kids?"),  # both name someone
        ("How do I book a swimming lesson for my daughter?", "How do I book a swiming lesson for my daugter?"),  # slips
        ("Can the hotel cater for a gluten allergy?",
         "My wife has a gluten allergy, can the hotel make sure her meals are safe?"),  # the story's subject
    ],
)
def test_the_same_persons_case_passes_someone(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming, 0.95) != "someone"
    assert find_conflict(incoming, cached, 0.95) != "someone"


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("How do I return my parcel?", "How do I return a parcel that has already been opened?"),
        ("How do I pay my council tax?", "What if my council tax is already overdue?"),
    ],
)
def test_a_thing_already_in_another_state_narrows_the_question(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming, 0.95) == "scope"
    assert find_conflict(incoming, cached, 0.95) == "scope"


def test_the_speakers_own_already_is_no_state_of_the_thing() -> None:
    assert find_conflict("Can I change my seat after booking?",
                         "I've already booked my flight, can I still change my seat?", 0.95) != "scope"
    assert find_conflict("How do I download the dataset?", "How do I download the already prepared dataset?",
                         0.95) != "scope"
    # A statement narrates (a cached prompt or answer-like text), it does not ask about a state.
    assert find_conflict("The library stores processed data locally, with caching built in.",
                         "The library stores processed data locally, and caching is already enabled.", 0.95) != "scope"


def test_the_same_verb_linking_speaker_and_party_the_other_way_is_a_swap() -> None:
    cached, incoming = "How do I complain about my landlord?", "My landlord has complained about me, what now?"
    assert find_conflict(cached, incoming, 0.95) == "persons"
    assert find_conflict(incoming, cached, 0.95) == "persons"
    # Other words, and no verb between the two on both sides: the speaker's own story.
    assert find_conflict("Can my landlord keep my deposit?",
                         "My landlord is refusing to give back my deposit, can I do anything?", 0.95) != "persons"


def test_making_a_thing_smaller_is_another_stage_than_creating_it() -> None:
    assert find_conflict("How do I create a PDF?", "How do I make my PDF smaller?", 0.95) == "action"
    assert find_conflict("How do I make a PDF?", "How do I create a PDF?", 0.95) is None


def test_a_relative_clause_that_only_describes_passes() -> None:
    assert find_conflict("How do I activate my new debit card?",
                         "how can I activate the new debit card that came in the post", 0.95) is None


def test_a_thing_or_another_subject_is_no_party_swap() -> None:
    # "Does the Pixel…" names a thing, "Can I…" the person using it; "Is my landlord allowed…" keeps the landlord.
    assert find_conflict("Does the Pixel support wireless charging?", "Can I charge my Pixel wirelessly?", 0.95) is None
    assert find_conflict("Can my landlord enter without giving notice?",
                         "Is my landlord allowed to come in without warning me first?", 0.95) != "persons"



def test_the_clause_naming_the_party_says_who_acts_when_the_question_names_the_speaker_both_ways() -> None:
    cached, incoming = "What do I do if my landlord ignores me?", "What do I do if I ignore my landlord?"
    assert find_conflict(cached, incoming, 0.95) == "persons"
    assert find_conflict(incoming, cached, 0.95) == "persons"
    # The same party acting on the speaker in both clauses, reworded, passes.
    assert find_conflict("What should I do if my neighbour keeps parking in front of my drive and blocks me in?",
                         "What can I do if my neighbour parks across my drive and blocks me in?", 0.95) != "persons"
    assert find_conflict("How do I complain if my landlord ignores me?",
                         "My landlord keeps ignoring me, how do I complain?", 0.95) is None


def test_the_speaker_being_the_person_the_other_side_names_as_theirs_is_another_case() -> None:
    cached, incoming = "Can my employee refuse to work overtime?", "As an employee, can I refuse to work overtime?"
    assert find_conflict(cached, incoming, 0.95) == "someone"
    assert find_conflict(incoming, cached, 0.95) == "someone"
    # Saying who one is on both sides, or of a person neither side has, changes nothing.
    assert find_conflict("As a carer, can I get help with my energy bills?",
                         "I'm a carer, is there help with energy bills for me?", 0.95) != "someone"
    assert find_conflict("Can my landlord keep my deposit for cleaning?",
                         "As a student, can my landlord keep my deposit for cleaning?", 0.95) != "someone"
    # "such as a child" names an example, not the speaker (scope turns that pair away first, so ask the rule).
    assert not someone(Pair("Can I claim child benefit for my child?",
                            "Can I claim benefits for dependants such as a child?", 0.95))
    assert someone(Pair("Can my employee refuse?", "As an employee, can I refuse?", 0.95))


def test_permission_and_blocking_are_opposite_poles() -> None:
    cached, incoming = "Which apps have permission to use my microphone?", "Which apps are blocked from my microphone?"
    assert find_conflict(cached, incoming, 0.95) == "polarity"
    assert find_conflict(incoming, cached, 0.95) == "polarity"
    assert find_conflict("How do I give an app permission to use my camera?",
                         "How do I allow an app to use my camera?", 0.95) is None


def test_the_two_sides_of_one_relation_are_opposite_poles() -> None:
    # Asked from the employer's side and from the employee's, the landlord's and the tenant's: another answer.
    assert find_conflict("How do I give notice to my employee?", "How do I give notice to my employer?",
                         0.95) == "polarity"
    assert find_conflict("What repairs is my landlord responsible for?",
                         "What repairs is my tenant responsible for?", 0.95) == "polarity"
    # Both sides of the relation named on both sides: one question.
    assert find_conflict("What notice does a landlord have to give a tenant?",
                         "How much notice must landlords give tenants?", 0.95) is None


def test_finding_what_one_has_lost_is_another_stage_than_getting_one() -> None:
    cached, incoming = "How do I get a library card?", "I've lost my library card, where can I find the number?"
    assert find_conflict(cached, incoming, 0.95) == "action"
    assert find_conflict(incoming, cached, 0.95) == "action"
    # Getting a new one after a loss is getting one; a loss with no other stage named passes.
    assert find_conflict("I've lost my bank card, how do I get a new one?", "How do I get a replacement bank card?",
                         0.95) is None
    assert find_conflict("I've lost my password, what do I do?", "How do I reset my password?", 0.95) is None
    # A loss that asks for something else than finding the thing is no look.
    assert find_conflict("How do I get a replacement birth certificate?",
                         "I've lost my birth certificate, how can I get another copy?", 0.95) != "action"
    assert find_conflict("How do I apply for jobseeker's allowance?",
                         "I've lost my job, how do I apply for jobseeker's allowance?", 0.95) != "action"

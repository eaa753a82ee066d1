#!/usr/bin/env python3
"""Writes sample_data/{mind,amazon-m2,recbole}: small, deterministic datasets in each
raw format, with plausible news headlines and product listings and users with
topical preferences (so a recommender has signal). sample_data/jsonl is then made
from sample_data/mind by `trsr prepare` (see sample_data/README.md).

Run from the repository root:  python3 scripts/make_sample_data.py
Only the Python standard library is used; the output depends on nothing but this file.
"""

import csv
import os
import random

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sample_data")
rng = random.Random(20240513)

FIRST = ["Maya", "Jordan", "Elena", "Marcus", "Priya", "Tom", "Aisha", "Lucas", "Grace",
         "Diego", "Hannah", "Omar", "Chloe", "Ravi", "Sofia", "Ben", "Nadia", "Caleb"]
LAST = ["Brooks", "Okafor", "Lindqvist", "Reyes", "Chen", "Whitaker", "Novak", "Haddad",
        "Sullivan", "Moreau", "Kowalski", "Tanaka", "Ferreira", "Grant", "Ibrahim", "Walsh"]
CITIES = ["Denver", "Atlanta", "Seattle", "Phoenix", "Boston", "Austin", "Chicago",
          "Portland", "Nashville", "Miami", "Detroit", "San Diego", "Minneapolis", "Tampa"]
TEAMS = ["Packers", "Bears", "Chiefs", "Eagles", "Cowboys", "Ravens", "Seahawks", "49ers",
         "Broncos", "Steelers", "Lions", "Bills"]
NBA = ["Lakers", "Celtics", "Bucks", "Nuggets", "Warriors", "Heat", "Suns", "Knicks"]
COMPANIES = ["Boeing", "Walmart", "Ford", "Target", "Starbucks", "Intel", "Nike", "Disney",
             "PepsiCo", "Delta", "Uber", "Netflix"]
TECH = ["Apple", "Google", "Microsoft", "Samsung", "Amazon", "Meta", "Sony", "Tesla"]


def person():
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


# (category, subcategory, [headline templates], [abstract templates])
NEWS_TOPICS = [
    ("sports", "football_nfl", [
        "{team} rally late to beat {team2} {a}-{b} behind {p}'s three touchdowns",
        "{team} place star receiver on injured reserve ahead of division showdown",
        "Five takeaways from the {team}' overtime loss to the {team2}",
        "{team} coach defends fourth-down call: 'I'd make it again'",
        "Rookie quarterback {p} keeps {team} playoff hopes alive",
        "{team2} defense smothers {team} in {a}-{b} road win",
    ], [
        "The {team} moved to {a}-{b} on the season after a wild finish on Sunday.",
        "Injuries continue to pile up as the {team} head into the second half of the season.",
    ]),
    ("sports", "basketball_nba", [
        "{nba} win fourth straight as {p} scores {n} points",
        "{nba} trade rumors heat up ahead of the deadline",
        "How the {nba} turned their season around in three weeks",
        "{p} posts triple-double as {nba} hold off {nba2}",
    ], [
        "The {nba} leaned on their bench in a game that went down to the final possession.",
    ]),
    ("finance", "markets", [
        "Stocks close at record high as investors cheer strong jobs report",
        "Dow slips {n} points as oil prices jump on supply worries",
        "{co} shares tumble after company cuts full-year forecast",
        "Treasury yields climb as the Fed signals rates will stay higher for longer",
        "What the latest inflation numbers mean for your savings account",
        "{co} beats earnings expectations, raises dividend",
        "Why small-cap stocks are quietly outperforming this quarter",
    ], [
        "Analysts said the move reflects growing confidence in consumer spending.",
        "Markets were mixed as traders weighed new economic data against earnings.",
    ]),
    ("finance", "personalfinance", [
        "{n} money mistakes to avoid before you retire",
        "How to build an emergency fund on a tight budget",
        "Is it smarter to pay off your mortgage early or invest?",
        "The credit card perks most people forget to use",
        "A {n}-step plan to get out of debt this year",
    ], [
        "Financial planners say small, steady changes add up faster than most people expect.",
    ]),
    ("health", "medical", [
        "New study links daily walking to lower risk of heart disease",
        "Doctors warn of early flu season as cases rise in {city}",
        "What to know about the updated COVID-19 booster",
        "Researchers find promising results in early Alzheimer's drug trial",
        "Why sleep may matter more for your heart than you think",
    ], [
        "Researchers followed thousands of adults for more than a decade.",
        "Health officials urged residents to get vaccinated before the holidays.",
    ]),
    ("health", "nutrition", [
        "{n} high-protein breakfasts that keep you full until lunch",
        "Is intermittent fasting worth it? Dietitians weigh in",
        "The surprising health benefits of eating more beans",
        "How much water do you really need each day?",
    ], [
        "Nutrition experts say variety matters more than any single superfood.",
    ]),
    ("news", "technology", [
        "{tech} unveils new smartphone with longer battery life and better camera",
        "{tech} faces antitrust scrutiny over its app store rules",
        "Scientists build AI model that predicts weather faster than supercomputers",
        "Here's how to protect your accounts after the latest data breach",
        "{tech} delays launch of its mixed-reality headset",
        "The best laptops for students this fall, tested",
        "Why electric car batteries are getting cheaper",
    ], [
        "The company said the update will roll out to users over the coming weeks.",
        "Privacy advocates raised concerns about how the data will be used.",
    ]),
    ("news", "newspolitics", [
        "Senate passes bipartisan infrastructure bill after weeks of debate",
        "Governor signs new budget with more money for schools",
        "{city} voters approve transit expansion in close race",
        "House committee opens hearing on election security",
    ], [
        "Lawmakers from both parties said the deal was a rare moment of compromise.",
    ]),
    ("travel", "travelnews", [
        "{n} underrated national parks to visit this winter",
        "Airline adds nonstop flights from {city} to Lisbon",
        "The best small towns for a fall foliage road trip",
        "How to find cheap flights for the holidays",
        "Inside the newly restored train route through the Rockies",
    ], [
        "Travel experts recommend booking early as demand stays high.",
    ]),
    ("foodanddrink", "recipes", [
        "{n} easy weeknight dinners you can make in 30 minutes",
        "The secret to crispy roast potatoes every time",
        "A one-pot chili recipe for cold nights",
        "How to make sourdough bread at home, step by step",
        "Best chocolate chip cookies: we tested {n} recipes",
    ], [
        "This recipe uses pantry staples and comes together in under an hour.",
    ]),
    ("entertainment", "movies", [
        "Box office: superhero sequel tops weekend with ${n} million",
        "Director {p} on making the year's most talked-about thriller",
        "The {n} best movies to stream this weekend",
        "Oscar race heats up after surprise festival win",
    ], [
        "Critics praised the film's performances and its unusual structure.",
    ]),
    ("autos", "autosnews", [
        "{n} most reliable used cars under $15,000",
        "First drive: the new hybrid pickup that gets 40 mpg",
        "Recall issued for {n},000 SUVs over faulty brake lights",
        "Why car prices may finally be coming down",
    ], [
        "Owners will be notified by mail and repairs will be free of charge.",
    ]),
    ("weather", "weathertopstories", [
        "Winter storm to bring heavy snow to {city} this weekend",
        "Record heat expected across the Southwest",
        "Flood watch issued as heavy rain moves into {city}",
    ], [
        "Forecasters urged residents to prepare for travel delays.",
    ]),
]


def fill(t):
    team, team2 = rng.sample(TEAMS, 2)
    nba, nba2 = rng.sample(NBA, 2)
    a, b = sorted([rng.randint(10, 38), rng.randint(3, 31)], reverse=True)
    return t.format(team=team, team2=team2, nba=nba, nba2=nba2, p=person(), n=rng.choice(
        [3, 5, 7, 8, 10, 12, 15, 21, 28, 31, 42, 112, 250]), a=a, b=b,
        city=rng.choice(CITIES), co=rng.choice(COMPANIES), tech=rng.choice(TECH))


def make_news():
    news = []
    seen = set()
    while len(news) < 180:
        cat, sub, heads, abstracts = rng.choice(NEWS_TOPICS)
        title = fill(rng.choice(heads))
        if title in seen:
            continue
        seen.add(title)
        nid = f"N{1000 + len(news) * 7}"
        abstract = fill(rng.choice(abstracts)) if rng.random() > 0.08 else ""
        news.append((nid, cat, sub, title, abstract))
    return news


def write_mind(news):
    d = os.path.join(ROOT, "mind")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "news.tsv"), "w", encoding="utf-8", newline="\n") as f:
        for nid, cat, sub, title, abstract in news:
            url = f"https://assets.msn.com/labs/mind/{nid}.html"
            ents = '[{"Label": "Example", "Type": "O", "WikidataId": "Q1", "Confidence": 1.0}]'
            f.write("\t".join([nid, cat, sub, title, abstract, url, ents, "[]"]) + "\n")
    by_sub = {}
    for n in news:
        by_sub.setdefault(n[2], []).append(n[0])
    subs = sorted(by_sub)
    rows = []
    imp_id = 1
    for u in range(48):
        user = f"U{100 + u * 13}"
        likes = rng.sample(subs, rng.choice([1, 2, 2, 3]))
        clicks = rng.randint(11, 26)
        hist = []
        while len(hist) < clicks:
            pool = by_sub[rng.choice(likes)] if rng.random() < 0.8 else by_sub[rng.choice(subs)]
            nid = rng.choice(pool)
            if nid not in hist:
                hist.append(nid)
        # 1-3 impression rows per user; the earliest one is what the loader keeps.
        for r in range(rng.randint(1, 3)):
            day, hour = rng.randint(9, 14), rng.randint(1, 12)
            when = f"11/{day}/2019 {hour}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} " \
                   f"{rng.choice(['AM', 'PM'])}"
            shown = rng.sample([n[0] for n in news if n[0] not in hist], rng.randint(8, 16))
            liked = [nid for nid in shown if any(nid in by_sub[s] for s in likes)]
            clicked = set(liked[:1] or shown[:1])
            imps = " ".join(f"{nid}-{1 if nid in clicked else 0}" for nid in shown)
            rows.append((rng.random(), f"{imp_id}\t{user}\t{when}\t{' '.join(hist)}\t{imps}"))
            imp_id += 1
    rows.sort()
    with open(os.path.join(d, "behaviors.tsv"), "w", encoding="utf-8", newline="\n") as f:
        for _, line in rows:
            f.write(line + "\n")


# Product families: (category words for RecBole, brands, title templates, sizes, materials, desc)
PRODUCTS = [
    ("electronics headphones", ["Soundcore", "JBL", "Sony", "Anker", "Jabra"], [
        "{brand} Wireless Over-Ear Headphones, Active Noise Cancelling, {n}H Playtime, Bluetooth 5.3|One Size",
        "{brand} True Wireless Earbuds with Charging Case, IPX5 Waterproof, Deep Bass|S/M/L Ear Tips",
        "{brand} Kids Headphones with Volume Limiter, Foldable, Wired 3.5mm|Kids",
        "{brand} Sports Earphones with Ear Hooks, Sweatproof, Built-in Mic|One Size",
    ], ["One Size"], ["Plastic", "Silicone", "Memory Foam"],
        "Immersive sound with rich bass and clear calls. Comfortable for all-day wear."),
    ("books fiction", ["Penguin", "Vintage", "HarperCollins", "Bloomsbury"], [
        "The {adj} {noun}: A Novel",
        "{noun} of the {noun2}: The Sunday Times Bestseller",
        "A {adj} Year in {city}",
        "The Last {noun} (Book {k} of the {noun2} Trilogy)",
    ], ["Paperback", "Hardcover"], [""],
        "A gripping, beautifully written story about family, memory and second chances."),
    ("books cooking", ["DK", "Ebury Press", "Quadrille"], [
        "{n} Easy Air Fryer Recipes: Quick, Healthy Meals for Busy Families",
        "The {adj} Vegetarian Kitchen: {n} Everyday Recipes",
        "Baking Bible: Breads, Cakes and Pastries Made Simple",
    ], ["Paperback", "Hardcover"], [""],
        "Step-by-step recipes with photographs, shopping tips and weekly meal plans."),
    ("kitchen cookware", ["Tefal", "Joseph Joseph", "OXO", "KitchenAid", "Salter"], [
        "{brand} Non-Stick Frying Pan {size}, Induction Compatible, Dishwasher Safe|24 cm",
        "{brand} Digital Kitchen Scale, 5kg Capacity, Tare Function|5 kg",
        "{brand} Stainless Steel Garlic Press with Cleaner|Standard",
        "{brand} Silicone Cooking Utensil Set, 6 Pieces, Heat Resistant|Set of 6",
        "{brand} Electric Kettle 1.7L, Rapid Boil, Auto Shut-Off|1.7 L",
        "{brand} Chef's Knife 20cm, German Steel, Ergonomic Handle|20 cm",
    ], ["20 cm", "24 cm", "28 cm", "1.7 L", "Set of 6"], ["Stainless Steel", "Aluminium", "Silicone"],
        "Built for everyday cooking, easy to clean and backed by a 2-year guarantee."),
    ("sports fitness", ["Gymshark", "Reebok", "Amazon Basics", "Decathlon"], [
        "{brand} Yoga Mat, Non-Slip, 6mm Thick, with Carry Strap|183 x 61 cm",
        "{brand} Adjustable Dumbbells Pair, {n}kg|Pair",
        "{brand} Resistance Bands Set of 5 with Door Anchor|Set of 5",
        "{brand} Foam Roller for Muscle Recovery, High Density|45 cm",
        "{brand} Skipping Rope with Ball Bearings, Adjustable Length|3 m",
    ], ["Standard", "Large", "One Size"], ["TPE", "Rubber", "EVA Foam"],
        "Durable equipment for home workouts, suitable for beginners and athletes."),
    ("phone accessories", ["Spigen", "Belkin", "Anker", "ESR"], [
        "{brand} Phone Case Compatible with iPhone 14, Shockproof, Clear|iPhone 14",
        "{brand} 20W USB-C Fast Charger Plug|UK Plug",
        "{brand} Tempered Glass Screen Protector, 3 Pack|3 Pack",
        "{brand} Magnetic Car Phone Holder for Air Vent|Universal",
        "{brand} Portable Power Bank 10000mAh, Slim|10000 mAh",
    ], ["iPhone 14", "Universal", "3 Pack"], ["TPU", "Polycarbonate", "Tempered Glass"],
        "Reliable protection and fast charging for your everyday devices."),
    ("garden outdoor", ["Gardena", "Spear & Jackson", "Kent & Stowe"], [
        "{brand} Garden Hose 30m with Spray Gun|30 m",
        "{brand} Pruning Shears, Bypass Secateurs, Carbon Steel|20 cm",
        "{brand} Solar Garden Lights, 8 Pack, Warm White|8 Pack",
        "{brand} Raised Garden Bed, Galvanised Steel, {size}|120 x 60 cm",
    ], ["30 m", "120 x 60 cm", "8 Pack"], ["Steel", "Plastic", "Wood"],
        "Weather-resistant tools and decor for a tidy, beautiful garden."),
    ("toys games", ["LEGO", "Hasbro", "Ravensburger", "Melissa & Doug"], [
        "{brand} 1000-Piece Jigsaw Puzzle, Scenic Lighthouse|1000 pieces",
        "{brand} Family Board Game for Ages 8 and Up|Standard",
        "{brand} Building Set: City Fire Station|Standard",
        "{brand} Wooden Train Set with {n} Pieces|Standard",
    ], ["1000 pieces", "Standard"], ["Cardboard", "Plastic", "Wood"],
        "Hours of fun for the whole family; makes a great gift."),
]
ADJ = ["Silent", "Hidden", "Golden", "Lost", "Quiet", "Wild", "Little", "Midnight", "Bright"]
NOUN = ["Garden", "River", "Lighthouse", "Orchard", "Winter", "Library", "Harbour", "Promise"]
COLORS = ["Black", "White", "Navy Blue", "Grey", "Red", "Sage Green", "Pink", ""]


def make_products():
    prods = []
    seen = set()
    while len(prods) < 170:
        cat, brands, titles, sizes, materials, desc = rng.choice(PRODUCTS)
        brand = rng.choice(brands)
        template, _, size = rng.choice(titles).partition("|")
        size = size or rng.choice(sizes)
        title = template.format(brand=brand, n=rng.choice([10, 20, 30, 40, 50, 100]),
                                          adj=rng.choice(ADJ), noun=rng.choice(NOUN),
                                          noun2=rng.choice(NOUN), city=rng.choice(CITIES),
                                          k=rng.randint(1, 3), size=size)
        if title in seen:
            continue
        seen.add(title)
        is_book = cat.startswith("books")
        pid = "B0" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8))
        prods.append({
            "id": pid, "locale": "UK", "title": title,
            "price": f"{rng.choice([4, 7, 9, 12, 15, 19, 24, 29, 34, 49, 59, 89])}.{rng.choice(['99', '49', '00'])}",
            "brand": brand, "color": "" if is_book else rng.choice(COLORS),
            "size": size, "model": "" if is_book else f"{brand[:3].upper()}-{rng.randint(100, 999)}",
            "material": rng.choice(materials), "author": person() if is_book else "",
            "desc": desc, "_cat": cat,
        })
    return prods


def numpy_repr(ids):
    """numpy's repr of a string array: space-separated, wrapped at 75 characters."""
    words = [f"'{i}'" for i in ids]
    lines, cur = [], "["
    for w in words:
        piece = w if cur == "[" else " " + w
        if len(cur) + len(piece) > 74:
            lines.append(cur)
            cur = " " + w
        else:
            cur += piece
    return "\n".join(lines + [cur + "]"])


def write_amazon(prods):
    d = os.path.join(ROOT, "amazon-m2")
    os.makedirs(d, exist_ok=True)
    cols = ["id", "locale", "title", "price", "brand", "color", "size", "model", "material",
            "author", "desc"]
    de = [dict(p, locale="DE") for p in prods[:12]]  # the same products listed in Germany
    with open(os.path.join(d, "products_train.csv"), "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for p in prods + de:
            w.writerow([p[c] for c in cols])
    by_cat = {}
    for p in prods:
        by_cat.setdefault(p["_cat"], []).append(p["id"])
    cats = sorted(by_cat)
    with open(os.path.join(d, "sessions_train.csv"), "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["prev_items", "next_item", "locale"])
        for s in range(52):
            likes = rng.sample(cats, rng.choice([1, 2, 2, 3]))
            n = rng.randint(10, 25)
            ids = []
            for _ in range(n):
                pool = by_cat[rng.choice(likes)] if rng.random() < 0.8 else by_cat[rng.choice(cats)]
                ids.append(rng.choice(pool))
            nxt = rng.choice(by_cat[rng.choice(likes)])
            locale = "DE" if s % 9 == 8 else "UK"
            if locale == "DE":
                ids = [rng.choice(de)["id"] for _ in range(n)]
            w.writerow([numpy_repr(ids), nxt, locale])


def write_recbole(prods):
    d = os.path.join(ROOT, "recbole")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "sample.item"), "w", encoding="utf-8", newline="\n") as f:
        f.write("item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\tprice:float\n")
        for i, p in enumerate(prods):
            f.write(f"{i + 1}\t{p['title']}\t{p['brand']}\t{p['_cat']}\t{p['price']}\n")
    by_cat = {}
    for i, p in enumerate(prods):
        by_cat.setdefault(p["_cat"], []).append(i + 1)
    cats = sorted(by_cat)
    rows = []
    for u in range(40):
        likes = rng.sample(cats, rng.choice([1, 2, 3]))
        t = 1_600_000_000 + rng.randint(0, 10_000_000)
        for _ in range(rng.randint(11, 26)):
            pool = by_cat[rng.choice(likes)] if rng.random() < 0.8 else by_cat[rng.choice(cats)]
            t += rng.randint(60, 86_400)
            rows.append(f"{u + 1}\t{rng.choice(pool)}\t{rng.choice([3, 4, 4, 5, 5])}\t{t}")
    rng.shuffle(rows)  # the loader must order each user's items by timestamp
    with open(os.path.join(d, "sample.inter"), "w", encoding="utf-8", newline="\n") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for r in rows:
            f.write(r + "\n")


def main():
    news = make_news()
    write_mind(news)
    prods = make_products()
    write_amazon(prods)
    write_recbole(prods)


if __name__ == "__main__":
    main()

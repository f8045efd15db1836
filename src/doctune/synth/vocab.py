"""Built-in word lists used to fill synthetic documents with plausible values.

The lists are deliberately modest and hand written; words are kept short so
that rendered lines fit the page at legible font sizes.
"""

from __future__ import annotations

# fmt: off

FIRST_NAMES: tuple[str, ...] = (
    "James", "Mary", "Robert", "Linda", "Michael", "Susan", "David", "Karen", "Daniel", "Nancy",
    "Paul", "Laura", "Mark", "Emily", "Steven", "Helen", "Andrew", "Sarah", "Brian", "Anna",
    "Kevin", "Julia", "Thomas", "Grace", "Peter", "Olivia", "Oscar", "Sofia", "Lucas", "Maria",
    "Ahmed", "Fatima", "Wei", "Mei", "Raj", "Priya", "Carlos", "Lucia", "Ivan", "Elena", "Hans",
    "Ingrid", "Kenji", "Yuki", "Omar", "Leila", "Samuel", "Chloe", "Victor", "Nora", "Felix",
    "Clara", "Hugo", "Alice", "Leo", "Rosa", "Adam", "Eva",
)

SURNAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Brown", "Miller", "Davis", "Garcia", "Wilson", "Moore", "Taylor",
    "Clark", "Lewis", "Walker", "Hall", "Young", "King", "Wright", "Lopez", "Hill", "Scott",
    "Green", "Baker", "Adams", "Nelson", "Carter", "Mitchell", "Perez", "Roberts", "Turner",
    "Phillips", "Evans", "Collins", "Stewart", "Morris", "Reed", "Cook", "Morgan", "Bell",
    "Murphy", "Bailey", "Cooper", "Richards", "Cox", "Ward", "Patel", "Chen", "Kim", "Nguyen",
    "Schmidt", "Fischer", "Weber", "Novak", "Rossi", "Silva", "Tanaka", "Khan", "Okafor",
    "Larsen", "Dubois", "Moreau", "Keller", "Brooks", "Hughes",
)

COMPANY_WORDS: tuple[str, ...] = (
    "Northwind", "Bluebird", "Summit", "Harbor", "Pioneer", "Redwood", "Falcon", "Granite",
    "Silverline", "Maple", "Evergreen", "Atlas", "Beacon", "Crescent", "Horizon", "Keystone",
    "Lakeside", "Meridian", "Oakridge", "Pinnacle", "Riverside", "Sterling", "Westfield",
    "Brightway", "Cobalt", "Delta", "Elm Street", "Fairview", "Golden Gate", "Ironwood",
    "Juniper", "Kingsley", "Lighthouse", "Northstar", "Orion", "Prairie", "Quantum", "Sunrise",
    "Tidewater", "Unity", "Vantage", "Willow", "Zenith", "Aspen", "Cedar",
)

COMPANY_TRADES: tuple[str, ...] = (
    "Supply", "Logistics", "Consulting", "Systems", "Foods", "Electric", "Design", "Printing",
    "Builders", "Media", "Labs", "Traders", "Industries", "Solutions", "Partners", "Motors",
    "Textiles", "Plastics", "Software", "Furniture", "Packaging", "Marine", "Health",
    "Analytics", "Studio",
)

COMPANY_SUFFIXES: tuple[str, ...] = (
    "Inc.", "LLC", "Ltd.", "Co.", "Corp.", "GmbH", "Group", "& Co.",
)

STREET_NAMES: tuple[str, ...] = (
    "Maple", "Oak", "Pine", "Cedar", "Elm", "Main", "High", "Park", "Lake", "Hill", "Church",
    "Mill", "River", "Station", "King", "Queen", "Market", "Bridge", "Chestnut", "Walnut",
    "Spruce", "Willow", "Sunset", "Harbor", "Franklin", "Lincoln", "Washington", "Madison",
    "Jackson", "Union", "Garden", "Meadow", "Orchard", "Valley", "Forest", "Spring",
)

STREET_TYPES: tuple[str, ...] = (
    "Street", "Avenue", "Road", "Lane", "Drive", "Way", "Court", "Boulevard", "St.", "Ave.",
    "Rd.", "Blvd.",
)

# (city, region code) pairs; postal codes are generated per document.
CITIES: tuple[tuple[str, str], ...] = (
    ("Springfield", "IL"), ("Portland", "OR"), ("Austin", "TX"), ("Denver", "CO"),
    ("Madison", "WI"), ("Columbus", "OH"), ("Raleigh", "NC"), ("Tucson", "AZ"), ("Boise", "ID"),
    ("Albany", "NY"), ("Omaha", "NE"), ("Dayton", "OH"), ("Fresno", "CA"), ("Tampa", "FL"),
    ("Reno", "NV"), ("Salem", "MA"), ("Eugene", "OR"), ("Lansing", "MI"), ("Trenton", "NJ"),
    ("Mobile", "AL"), ("Provo", "UT"), ("Akron", "OH"), ("Savannah", "GA"), ("Spokane", "WA"),
    ("Topeka", "KS"), ("Dover", "DE"), ("Helena", "MT"), ("Fargo", "ND"), ("Billings", "MT"),
    ("Toledo", "OH"),
)

PRODUCTS: tuple[str, ...] = (
    "Office chair", "Desk lamp", "Copy paper", "Toner", "USB cable", "Mouse", "Keyboard",
    "Monitor arm", "Stapler", "Notebook A5", "Ballpoint pens", "File folders", "Whiteboard",
    "Markers", "Boxes (10)", "Packing tape", "Label roll", "Safety gloves", "Hard hat",
    "Work boots", "LED bulb", "Power strip", "Power drill", "Drill bits", "Screws (box)",
    "Wood glue", "Paint roller", "Sandpaper", "Coffee beans", "Paper cups", "Water bottles",
    "Hand soap", "Cleaner", "Laptop bag", "HDMI cable", "Webcam", "Headset", "Router",
    "SSD 1TB", "Server rack", "Desk tray", "Bookshelf", "File cabinet",
)

SERVICES: tuple[str, ...] = (
    "Consulting", "Design work", "Site visit", "Installation", "Maintenance", "Training",
    "Web hosting", "Support plan", "Data migration", "Cleaning", "Delivery fee", "Setup fee",
    "Annual license", "Audit review", "Photography", "Translation",
)

GROCERIES: tuple[str, ...] = (
    "Milk 1L", "Bread", "Eggs 12pk", "Butter", "Cheddar", "Apples", "Bananas", "Coffee",
    "Tea bags", "Rice 2kg", "Pasta", "Tomatoes", "Chicken", "Yogurt", "Orange juice", "Cereal",
    "Olive oil", "Onions", "Potatoes", "Chocolate", "Soda water", "Cookies", "Salad mix",
    "Soup", "Honey", "Flour", "Latte", "Croissant", "Sandwich", "Muffin", "Bagel", "Espresso",
)

STORE_TYPES: tuple[str, ...] = (
    "Market", "Grocery", "Cafe", "Foods", "Bakery", "Deli", "Mart", "Hardware", "Pharmacy",
    "General Store",
)

BANK_WORDS: tuple[str, ...] = (
    "First National", "Citizens", "Heritage", "Union", "Commerce", "Pacific", "Frontier",
    "Coastal", "Summit", "Liberty", "Capital", "Great Lakes",
)

BANK_SUFFIXES: tuple[str, ...] = (
    "Bank", "Savings Bank", "Credit Union", "Trust",
)

TRANSACTIONS_OUT: tuple[str, ...] = (
    "Grocery store", "Electric bill", "Water bill", "Rent payment", "Gas station", "Phone bill",
    "Internet", "Insurance", "Restaurant", "Pharmacy", "ATM cash", "Online store", "Gym",
    "Book store", "Car repair", "Parking", "Streaming", "Card payment",
)

TRANSACTIONS_IN: tuple[str, ...] = (
    "Salary", "Transfer in", "Refund", "Interest", "Cash deposit", "Dividend", "Tax refund",
)

DEPARTMENTS: tuple[str, ...] = (
    "Finance", "Marketing", "Sales", "Engineering", "Human Resources", "Operations", "Legal",
    "Support", "Research", "Logistics", "IT",
)

JOB_TITLES: tuple[str, ...] = (
    "Accountant", "Analyst", "Engineer", "Designer", "Manager", "Technician", "Coordinator",
    "Consultant", "Assistant", "Developer", "Nurse", "Driver",
)

EMAIL_DOMAINS: tuple[str, ...] = (
    "mail.com", "example.com", "inbox.net", "post.org", "webmail.com",
)

PAYMENT_TERMS: tuple[str, ...] = (
    "Net 15", "Net 30", "Net 45", "Net 60", "Due on receipt", "2/10 Net 30",
)

SHIPPING_METHODS: tuple[str, ...] = (
    "Ground", "Express", "Freight", "Courier", "Air", "Pickup",
)

CARD_BRANDS: tuple[str, ...] = (
    "VISA", "MASTERCARD", "AMEX", "DEBIT",
)

RELATIONS: tuple[str, ...] = (
    "Spouse", "Parent", "Sibling", "Friend", "Partner",
)
# fmt: on

"""Name lists for the demo data: common US names, with accents, apostrophes and hyphens."""

from __future__ import annotations

import unicodedata

# fmt: off
FEMALE_FIRST: tuple[str, ...] = (
    "Olivia", "Emma", "Charlotte", "Amelia", "Sophia", "Mia", "Isabella", "Ava", "Evelyn",
    "Harper", "Luna", "Camila", "Gianna", "Elizabeth", "Eleanor", "Ella", "Abigail", "Sofia",
    "Avery", "Scarlett", "Emily", "Aria", "Penelope", "Chloe", "Layla", "Mila", "Nora", "Hazel",
    "Madison", "Ellie", "Lily", "Nova", "Isla", "Grace", "Violet", "Aurora", "Riley", "Zoey",
    "Willow", "Emilia", "Stella", "Zoë", "Victoria", "Hannah", "Addison", "Leah", "Lucy",
    "Eliana", "Ivy", "Everly", "Lillian", "Paisley", "Elena", "Naomi", "Maya", "Natalie",
    "Kinsley", "Delilah", "Claire", "Audrey", "Aaliyah", "Ruby", "Brooklyn", "Alice", "Aubrey",
    "Autumn", "Leilani", "Savannah", "Valentina", "Kennedy", "Madelyn", "Josephine", "Bella",
    "Skylar", "Genesis", "Sophie", "Hailey", "Sadie", "Natalia", "Quinn", "Caroline", "Allison",
    "Gabriella", "Anna", "Serenity", "Nevaeh", "Cora", "Ariana", "Emery", "Lydia", "Jade",
    "Sarah", "Eva", "Adeline", "Madeline", "Piper", "Rylee", "Athena", "Peyton", "Everleigh",
    "María", "Sofía", "Lucía", "Ximena", "Chloé", "Renée", "Inés", "Mariana", "Guadalupe",
    "Fatima", "Aisha", "Mei", "Yuna", "Priya", "Ananya", "Nguyen Thi", "Siobhán", "Åsa",
    "Anne-Marie", "Mary Kate", "Dakota", "Winona", "Keala", "Kiana", "Ngozi",
)

MALE_FIRST: tuple[str, ...] = (
    "Liam", "Noah", "Oliver", "James", "Elijah", "William", "Henry", "Lucas", "Benjamin",
    "Theodore", "Mateo", "Levi", "Sebastian", "Daniel", "Jack", "Michael", "Alexander", "Owen",
    "Asher", "Samuel", "Ethan", "Leo", "Jackson", "Mason", "Ezra", "John", "Hudson", "Luca",
    "Aiden", "Joseph", "David", "Jacob", "Logan", "Luke", "Julian", "Gabriel", "Grayson",
    "Wyatt", "Matthew", "Maverick", "Dylan", "Isaac", "Elias", "Anthony", "Thomas", "Jayden",
    "Carter", "Santiago", "Ezekiel", "Charles", "Josiah", "Caleb", "Cooper", "Lincoln", "Miles",
    "Christopher", "Nathan", "Isaiah", "Kai", "Joshua", "Andrew", "Angel", "Adrian", "Cameron",
    "Nolan", "Waylon", "Jaxon", "Roman", "Eli", "Wesley", "Aaron", "Ian", "Christian", "Ryan",
    "Leonardo", "Brooks", "Axel", "Walker", "Jonathan", "Easton", "Everett", "Weston", "Bennett",
    "Robert", "Jameson", "Landon", "Silas", "Jose", "Beau", "Micah", "Colton", "Jordan",
    "Jeremiah", "Parker", "Greyson", "Rowan", "Adam", "Nicholas", "Theo", "Xavier", "Hunter",
    "José", "Jesús", "Andrés", "Matías", "Sebastián", "Nicolás", "Joaquín", "Álvaro", "Iñaki",
    "François", "Søren", "Björn", "Mohammed", "Omar", "Yusuf", "Hiroshi", "Minh", "Arjun",
    "Jean-Luc", "Jean-Paul", "Tyrone", "DeShawn", "Malik", "Kekoa", "Takoda", "Chidi",
)

NONBINARY_FIRST: tuple[str, ...] = (
    "Alex", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn", "Rowan",
    "Sage", "River", "Skyler", "Emerson", "Remy", "Noé", "Ari", "Kai", "Robin", "Charlie",
)

LAST: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall",
    "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans",
    "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris",
    "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson",
    "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson",
    "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes", "Price",
    "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez",
    "Powell", "Jenkins", "Perry", "Russell", "Sullivan", "Bell", "Coleman", "Butler",
    "Henderson", "Barnes", "Gonzales", "Fisher", "Vasquez", "Simmons", "Romero", "Jordan",
    "Patterson", "Alexander", "Hamilton", "Graham", "Reynolds", "Griffin", "Wallace", "Moreno",
    "West", "Cole", "Hayes", "Bryant", "Herrera", "Gibson", "Ellis", "Tran", "Medina", "Aguilar",
    "Stevens", "Murray", "Ford", "Castro", "Marshall", "Owens", "Harrison", "Fernandez",
    "McDonald", "Woods", "Washington", "Kennedy", "Wells", "Vargas", "Henry", "Chen", "Freeman",
    "Webb", "Tucker", "Guzman", "Burns", "Crawford", "Olson", "Simpson", "Porter", "Hunter",
    "O'Brien", "O'Connor", "O'Neill", "D'Angelo", "McAllister", "MacLeod", "Núñez", "Muñoz",
    "Peña", "Ibáñez", "Méndez", "Sánchez", "Gómez", "Rodríguez", "Hernández", "Pérez",
    "Álvarez", "Martínez", "Jiménez", "Müller", "Schröder", "Bjørnsen", "Çelik", "Dvořák",
    "Lefèvre", "Nakamura", "Takahashi", "Yamamoto", "Wang", "Zhang", "Liu", "Pham", "Le",
    "Okafor", "Adeyemi", "Mensah", "Kowalski", "Nowak", "Novak", "Ivanov", "Haddad", "Khan",
    "Singh", "Kaur", "Shah", "Begay", "Yazzie", "Tsosie", "Kealoha", "Van der Berg", "De la Cruz",
    "St. John", "Del Rosario",
)

MIDDLE: tuple[str, ...] = (
    "Marie", "Ann", "Lynn", "Rose", "Grace", "Jane", "Elizabeth", "Louise", "Mae", "Jean",
    "James", "Lee", "Michael", "Alan", "Ray", "Joseph", "Thomas", "Edward", "Allen", "Paul",
    "Jo", "Sue", "Kay", "Dean", "Wayne", "Luis", "José", "Andrés", "Renée", "Noël", "A", "J",
    "M", "R",
)

# fmt: on

SUFFIXES: tuple[str, ...] = ("JR", "SR", "II", "III", "IV")

# Letters that Unicode does not decompose into a base letter plus an accent.
_NO_DECOMPOSITION = str.maketrans({"ø": "o", "Ø": "O", "ß": "ss", "ł": "l", "Ł": "L"})


def plain_spelling(name: str) -> str:
    """``name`` without accents (José -> Jose), as an older system would have typed it."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_NO_DECOMPOSITION))
    return "".join(c for c in decomposed if not unicodedata.combining(c))

"""The workshop notebook's data generator cells, copied unchanged: In [1] (without its `!pip3 install -r
requirements.txt` shell line), In [2], In [4] and In [6] (without its `!head`). tests/test_readme.py runs
this file to show that `pip install -e '.[notebook]'` gives the notebook what its cells import, and
that the pipeline accepts what it writes. Not part of the package."""
# In [1]:
import pandas as pd
import datetime, time, arrow
import random
from random import choice

# In [2]:
from faker import Faker
fake = Faker('en_US')
for _ in range(10):
    print(fake.name(), fake.phone_number(), fake.street_address())

# In [4]:
def fake_data_generation(total_records, total_customers, total_products):
    transactions = []
    fake = Faker()

    customer_ids = random.sample(range(100000, 999999), total_customers)
    emails = [fake.free_email() for _ in range(total_customers)]
    ages = [random.randrange(99) for _ in range(total_customers)]
    sizes = [random.choice(['XS', 'S', 'M', 'L', 'XL']) for _ in range(total_customers)]
    names = [fake.name() for _ in range(total_customers)]
    phone_numbers = [fake.phone_number() for _ in range(total_customers)]
    addresses = [fake.street_address() for _ in range(total_customers)]

    personal_data = list(zip(customer_ids, emails, ages, sizes, names, phone_numbers, addresses))
    products = random.sample(range(10000, 19999), total_products)

    for i in range(total_records):
        item_ids = random.choices(products, k=random.randrange(1,7))
        customer = random.choice(personal_data)
        transactions.append({
                "transactionId":  random.randrange(100000000, 999999999),
                "userId": customer[0],
                "email":  customer[1],
                "age" : customer[2],
                "tshirtSize": customer[3],
                "fullName": customer[4],
                "phoneNumber": customer[5],
                "address": customer[6],
                "transactionAmount": random.randrange(323),
                "items": item_ids,
                "totalItems" : len(item_ids),
                "date" : arrow.utcnow().shift(days=-1*random.randrange(180)).format('YYYY-MM-DD HH:mm:ss'),
                "purposeConsent" : random.randint(0, 2)
                })
        
    return transactions


df = pd.DataFrame(fake_data_generation(10000, 500, 50))
# In [6]:
timestamp = time.time()
df.to_csv(f'example_input.csv', index=False)  

